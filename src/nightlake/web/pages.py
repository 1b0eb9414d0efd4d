"""The pages of ``nightlake serve``: one handler per URL, each rendering one template.

URLs (GET and HEAD only; any other method is 405)::

    /                         the nights
    /night/<YYYYMMDD>         one night: charts, focal plane, image table   (404: unknown)
    /detrends                 detrend coverage and audit findings
    /sql?q=…&p.NAME=…         a read-only query; 400 bad SQL, 403 refused write
    /sql.csv?…  /sql.parquet?…  /sql.json?…   the same query's rows as a download
    /static/…                 the app's CSS/JS and vendor/ (Vega, Vega-Lite, vega-embed)

DOM contract (stable: the browser tests rely on it)

Every page
  ``<main id="page" data-page="nights|night|detrends|sql|error">``;
  nav links ``a#nav-nights``, ``a#nav-detrends``, ``a#nav-sql``;
  ``div#stale-banner`` (role="alert") only when the detrend mirror cannot be used as it is
  (stale, old format, database missing); an error line is ``p#error``.
  No inline script or style: page data sits in ``<script type="application/json">``.

Charts
  ``<figure class="chart" data-chart="NAME" data-marks="N" data-mark-selector="CSS">`` holding
  ``div.chart-view`` (where Vega draws an SVG) and ``script.chart-spec`` (the Vega-Lite spec,
  JSON). When drawn, the figure gets ``data-rendered="true"`` (``"error"`` on failure), and
  ``figure.querySelectorAll(CSS).length == N``: one mark per point or detector. Points and
  rectangles carry a link (Vega ``href``): a click opens the night or filters its images.
  Tooltips: Vega's tooltip element ``#vg-tooltip-element`` (class ``visible`` while shown).
  Names: ``nights-fwhm``, ``nights-zero-point``, ``nights-sky`` on /; ``night-fwhm``,
  ``night-zero-point``, ``night-sky``, ``focal-plane`` on /night/…; ``detrend-coverage`` on
  /detrends.

/ (nights)
  ``table#nights``, one ``tr[data-night=YYYYMMDD]`` per night, in night order; its first cell
  links ``a[href="/night/YYYYMMDD"]``; value cells ``td[data-col=COL][data-level=LEVEL]`` with
  COL in images, visits, fwhm, zero_point, sky and LEVEL ok|warn|bad|none (thresholds from
  the lake's serve.toml), ``data-value`` the unrounded number. ``p#no-images`` when empty.

/night/YYYYMMDD
  ``h1#night`` (the night); ``a#prev-night`` and ``a#next-night`` (absent at the ends);
  ``form#image-filters`` (GET): ``select[name=cols][multiple]`` of every images column,
  ``input[name="f.COL"]`` equality filters (also ``ge.COL`` / ``le.COL`` in the URL);
  ``table#images`` with ``th[data-col]`` and one ``tr#image-VISIT-DETECTOR[data-visit]
  [data-detector]`` per image; ``p#image-count``. A bad column or value: 400, ``p#error``.

/detrends
  ``p#no-mirror`` when the lake has no detrend mirror (nothing else then); otherwise
  ``table#findings`` (``tr[data-finding][data-type]``), ``table#finding-counts``
  (``tr[data-type]``, a ``td[data-finding]`` per kind of finding the lake has),
  ``table#unresolved`` (images without a detrend, ``tr[data-type]``) and the
  ``detrend-coverage`` chart.

/sql
  ``form#sql-form`` (GET /sql): ``textarea#q[name=q]``, one ``input#param-NAME[name="p.NAME"]``
  per ``$NAME`` of the query; ``table#result`` (``th`` per column, ``td`` per value);
  ``p#row-count``; ``p#row-cap`` when the result was cut to ``limits.row_cap``; download links
  ``a#download-csv``, ``a#download-parquet``, ``a#download-json`` (same query string).
  Errors: ``p#error`` with status 400 (bad SQL, missing parameter, time limit) or 403
  (a statement that could write, with the reason).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from nightlake.detrends.audit import FINDINGS
from nightlake.errors import QueryError, ReadOnlyError, UsageError, one_line
from nightlake.web import charts, queries

if TYPE_CHECKING:
    from nightlake.web.app import Site

NIGHT_METRICS = (
    # (chart suffix, nights table cell, column, label, threshold)
    ("fwhm", "fwhm", "fwhm_median_arcsec", "seeing FWHM (arcsec)", "fwhm_arcsec"),
    ("zero-point", "zero_point", "zero_point_median", "zero point (mag)", "zero_point"),
    ("sky", "sky", "sky_bg_median", "sky background (counts)", "sky_bg"),
)


def site(request: Request) -> Site:
    return request.app.state.site


def nights(request: Request) -> list[dict[str, Any]]:
    """Every night's ``night_summary`` row: the nights page, and a night's own row and its
    neighbours on the night page, from one query."""
    s = site(request)
    return s.cached(request, "nights", lambda: queries.nights(s.lake))


def nights_page(request: Request) -> Response:
    s = site(request)
    settings = s.settings()
    rows = nights(request)
    levels = {
        r["night"]: {
            cell: settings.thresholds[threshold].level(r[column])
            for _, cell, column, _, threshold in NIGHT_METRICS
        }
        for r in rows
    }
    figures = [
        charts.nights_chart(
            f"nights-{suffix}",
            label,
            rows,
            column,
            label,
            settings.thresholds[threshold],
            {night: by_cell[cell] for night, by_cell in levels.items()},
        )
        for suffix, cell, column, label, threshold in NIGHT_METRICS
    ]
    return s.render(
        request, "nights.html", page="nights", nights=rows, levels=levels, charts=figures
    )


def night_page(request: Request) -> Response:
    s = site(request)
    night = request.path_params["night"]
    all_nights = nights(request)
    summary = queries.night_of(all_nights, night, s.lake)  # NotFound before any query
    prev, nxt = queries.neighbours(all_nights, night)
    visit_rows, plane = s.cached(
        request,
        f"night:{night}",
        lambda: (queries.visits(s.lake, night), queries.focal_plane(s.lake, night)),
    )
    figures = [
        charts.visits_chart(
            f"night-{suffix}", f"{label} per visit", night, visit_rows, column, label
        )
        for suffix, _, column, label, _ in NIGHT_METRICS
    ]
    figures.append(
        charts.focal_plane_chart(night, plane, "fwhm_median_arcsec", "seeing FWHM (arcsec)")
    )
    known = s.cached(request, "columns", lambda: queries.image_columns(s.lake))
    query = image_query(request)
    context: dict[str, Any] = dict(
        page="night",
        night=night,
        summary=summary,
        prev_night=prev,
        next_night=nxt,
        charts=figures,
        known_columns=known,
        image_query=query,
        equal=dict(query.equal),
    )
    context["images"] = queries.image_rows(s.lake, night, query, known, s.settings().row_cap)
    return s.render(request, "night.html", **context)


def image_query(request: Request) -> queries.ImageQuery:
    """The image table's columns (``cols``, repeated or comma-separated) and filters
    (``f.COL=value``, ``ge.COL=min``, ``le.COL=max``) from the query string."""
    args = request.query_params
    cols = [c.strip() for value in args.getlist("cols") for c in value.split(",") if c.strip()]
    found: dict[str, list[tuple[str, str]]] = {"f.": [], "ge.": [], "le.": []}
    for key, value in args.multi_items():
        for prefix, pairs in found.items():
            if key.startswith(prefix) and value != "":
                pairs.append((key[len(prefix) :], value))
    return queries.ImageQuery(
        columns=tuple(dict.fromkeys(cols)) or queries.DEFAULT_IMAGE_COLUMNS,
        equal=tuple(found["f."]),
        at_least=tuple(found["ge."]),
        at_most=tuple(found["le."]),
    )


def not_found(request: Request, message: str) -> HTMLResponse:
    return site(request).render(
        request, "error.html", status=404, page="error", error=message, heading="Not found"
    )


#: /sql.<format>: the writers of :mod:`nightlake.query.output`, with their media types.
DOWNLOADS = {
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "json": "application/json",
}


def sql_request(request: Request) -> tuple[str, dict[str, str], list[str]]:
    """The query (``q``), its parameters (``p.NAME``) and the ``$NAME``s it uses.

    Parameters the query does not use are dropped (a form keeps the fields of the query
    before an edit); a missing one is still an error of the query's.
    """
    from nightlake.query.stream import parameter_names

    args = request.query_params
    query = args.get("q", "")
    given = {k[2:]: v for k, v in args.multi_items() if k.startswith("p.")}
    names = parameter_names(query)
    if names is None:  # does not parse: the run says why; keep what was given
        return query, given, list(given)
    return query, {k: v for k, v in given.items() if k in names}, names


def from_elsewhere(request: Request) -> bool:
    """Whether the browser says another site sent this request (``Sec-Fetch-Site``, else an
    ``Origin`` that is not this server's): a link or an image on any page a user opens
    could otherwise make the server run SQL."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}"


def sql_page(request: Request) -> Response:
    s = site(request)
    settings = s.settings()
    query, params, names = sql_request(request)
    context: dict[str, Any] = dict(
        page="sql",
        q=query,
        params=params,
        names=names,
        result=None,
        settings=settings,
        page_cells=queries.PAGE_CELLS,
    )
    if not query.strip():
        return s.render(request, "sql.html", **context)
    if from_elsewhere(request):  # shown to be read, run only from this server's own form
        return s.render(request, "sql.html", elsewhere=True, **context)
    downloads = {fmt: f"/sql.{fmt}?{request.url.query}" for fmt in DOWNLOADS}
    context["downloads"] = downloads
    try:
        context["result"] = queries.run_user_sql(
            s.lake,
            query,
            params,
            seconds=settings.query_seconds,
            row_cap=settings.row_cap,
            cell_cap=queries.PAGE_CELLS,
        )
    except (QueryError, UsageError) as exc:
        status = 403 if isinstance(exc, ReadOnlyError) else 400
        return s.render(request, "sql.html", status=status, error=one_line(exc), **context)
    return s.render(request, "sql.html", **context)


def sql_download(request: Request) -> Response:
    """The rows of ``/sql``'s query in one of :data:`DOWNLOADS`, all of them or none: a
    result over ``limits.download_row_cap`` is refused rather than cut."""
    import io

    from nightlake.query.output import write_result

    fmt = request.path_params["fmt"]
    if fmt not in DOWNLOADS:
        return not_found(request, f"no download format {fmt!r} (csv, parquet or json)")
    s = site(request)
    settings = s.settings()
    query, params, _ = sql_request(request)
    if not query.strip():
        raise UsageError("no query: add ?q=SELECT …")
    if from_elsewhere(request):
        raise ReadOnlyError(
            "this download was requested from another site; open the query on this "
            "server's /sql page and download it from there"
        )
    cap = settings.download_row_cap
    result = queries.run_user_sql(
        s.lake, query, params, seconds=settings.query_seconds, row_cap=cap
    )
    if result.truncated:
        raise UsageError(
            f"the result has more than {cap} rows (limits.download_row_cap in the lake's "
            "serve.toml); narrow the query or use nightlake export"
        )
    sink = io.BytesIO()
    write_result(result.table.to_reader(), fmt, sink, stream_ipc=False)
    return Response(
        sink.getvalue(),
        media_type=DOWNLOADS[fmt],
        headers={"content-disposition": f'attachment; filename="query.{fmt}"'},
    )


def detrends_page(request: Request) -> Response:
    s = site(request)
    report = s.cached(request, "detrends", lambda: queries.detrend_report(s.lake, s.freshness()))
    counts: dict[str, dict[str, int]] = {}
    for f in report.findings:
        counts.setdefault(f["type"], {}).setdefault(f["finding"], 0)
        counts[f["type"]][f["finding"]] += 1
    figures = [charts.coverage_chart(report.coverage)] if report.coverage else []
    return s.render(
        request,
        "detrends.html",
        page="detrends",
        report=report,
        counts=counts,
        finding_kinds=[k for k in FINDINGS if any(k in c for c in counts.values())],
        charts=figures,
        listed=queries.UNRESOLVED_LISTED,
    )
