"""The data of each page, asked of the lake: Arrow tables and Python rows, no HTML.

Every number a page shows comes from the macros of ``sql/70_nights.sql`` (and the detrend
macros) through :meth:`nightlake.Lake.sql`, the read-only path of ``nightlake sql``; user SQL
goes through :func:`run_user_sql` with the same guard, a time limit and a row cap.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nightlake.errors import NightlakeError, QueryError, UsageError
from nightlake.sql import sql_identifier

if TYPE_CHECKING:
    import pyarrow as pa

    from nightlake.detrends.mirror import Freshness
    from nightlake.query.lake import Lake


class NotFound(NightlakeError):
    """A page of something the lake does not hold (an unknown night)."""


class QueryTimeout(QueryError):
    """A query ran past the time limit and was interrupted."""


def nights(lake: Lake) -> list[dict[str, Any]]:
    """One row per night (``night_summary``); empty for a lake without images."""
    if not lake.image_files():
        return []
    return lake.sql("SELECT * FROM night_summary() ORDER BY night").to_pylist()


def night_of(nights: Sequence[dict[str, Any]], night: str, lake: Lake) -> dict[str, Any]:
    """The row of ``night`` among :func:`nights`; :class:`NotFound` when the lake has none."""
    for row in nights:
        if row["night"] == night:
            return row
    raise NotFound(f"no night {night!r} in the lake {lake.path}")


def neighbours(nights: Sequence[dict[str, Any]], night: str) -> tuple[str | None, str | None]:
    """The nights with images just before and just after ``night``, among :func:`nights`."""
    before = [r["night"] for r in nights if r["night"] < night]
    after = [r["night"] for r in nights if r["night"] > night]
    return max(before, default=None), min(after, default=None)


def visits(lake: Lake, night: str) -> list[dict[str, Any]]:
    """One row per visit of ``night`` (``visit_summary``), in time order."""
    return lake.sql(
        "SELECT * FROM visit_summary() WHERE night = $night ORDER BY obs_time, visit",
        {"night": night},
    ).to_pylist()


def focal_plane(lake: Lake, night: str) -> list[dict[str, Any]]:
    """One row per detector of ``night`` with its place on the sky (``focal_plane``)."""
    return lake.sql(
        "SELECT * FROM focal_plane() WHERE night = $night ORDER BY detector", {"night": night}
    ).to_pylist()


def image_columns(lake: Lake) -> list[str]:
    """The columns of the ``images`` view, in order."""
    return lake.sql("SELECT * FROM images LIMIT 0").schema.names


@dataclass(frozen=True)
class SqlResult:
    """Rows of a user query: at most the cap, and whether more were left out."""

    table: pa.Table
    truncated: bool
    cap: int = 0  # the rows it could hold

    def numeric(self) -> list[bool]:
        """Which columns hold numbers (shown right-aligned)."""
        import pyarrow as pa

        kinds = (pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal)
        return [any(kind(f.type) for kind in kinds) for f in self.table.schema]

    def rows(self) -> list[tuple]:
        """The rows as tuples, by position (a result's column names may repeat)."""
        columns = [c.to_pylist(maps_as_pydicts="lossy") for c in self.table.columns]
        return list(zip(*columns)) if columns else []


#: Cells (rows × columns) the /sql page shows at most: a result of 3,000 columns shows 33
#: rows, not ``limits.row_cap`` (a 1,000-row page of them was 74 MB and took 14 s to render).
PAGE_CELLS = 100_000


#: The image table's columns when the query string names none.
DEFAULT_IMAGE_COLUMNS = (
    "visit",
    "detector",
    "target",
    "band",
    "obs_time",
    "exposureTime",
    "airmass",
    "psfSigma",
    "zeroPoint",
    "skyBg",
    "nPsfStar",
)


@dataclass(frozen=True)
class ImageQuery:
    """What the image table shows: columns, equality filters and range filters by column."""

    columns: tuple[str, ...] = DEFAULT_IMAGE_COLUMNS
    equal: tuple[tuple[str, str], ...] = ()
    at_least: tuple[tuple[str, str], ...] = ()
    at_most: tuple[tuple[str, str], ...] = ()


def image_rows(
    lake: Lake, night: str, query: ImageQuery, known: Sequence[str], limit: int
) -> SqlResult:
    """The first ``limit`` images of ``night`` with ``query``'s columns and filters.

    Column names are checked against ``known`` (the view's columns) and quoted; every
    value is a bound parameter, compared as the column's own type.
    """
    for name in [*query.columns, *(c for part in _filters(query) for c, _ in part[1])]:
        if name not in known:
            raise UsageError(f"unknown column {name!r} (columns of images: {', '.join(known)})")
    where = ["night = $night"]
    params: dict[str, Any] = {"night": night}
    for op, pairs in _filters(query):
        for i, (column, value) in enumerate(pairs):
            name = f"{op[1]}{i}"
            where.append(f"{sql_identifier(column)} {op[0]} ${name}")
            params[name] = value
    columns = [c for c in query.columns if c not in ("visit", "detector")]
    select = ", ".join(sql_identifier(c) for c in ["visit", "detector", *columns])
    sql = (
        f"SELECT {select} FROM images WHERE {' AND '.join(where)} "
        f"ORDER BY visit, detector LIMIT {int(limit) + 1}"
    )
    table = lake.sql(sql, params)
    return SqlResult(table.slice(0, limit), table.num_rows > limit)


def _filters(query: ImageQuery):
    return (
        (("=", "eq"), query.equal),
        ((">=", "ge"), query.at_least),
        (("<=", "le"), query.at_most),
    )


#: Statement types a visitor may not run: they would reach past the transaction each query
#: runs in (and so into the next visitor's queries). ``nightlake sql`` has its own process.
SHARED_STATE_TYPES = frozenset({"TRANSACTION", "ATTACH", "DETACH"})


def check_isolated(query: str) -> None:
    """Refuse what the read-only guard allows but a shared server cannot: transaction
    control, ATTACH and DETACH (by DuckDB's statement types); the guard runs first."""
    from nightlake.query.stream import check_read_only, parse_statements

    statements = parse_statements(query)
    check_read_only(query, statements)
    for statement in statements:
        kind = statement.type.name
        if kind in SHARED_STATE_TYPES:
            raise UsageError(
                f"{kind} statements are not available here: every query of this page runs in a "
                "transaction of its own that is rolled back; use nightlake sql for them"
            )


def run_user_sql(
    lake: Lake,
    query: str,
    params: Mapping[str, Any] | None,
    *,
    seconds: float,
    row_cap: int,
    cell_cap: int | None = None,
) -> SqlResult:
    """Run user SQL read-only (:func:`nightlake.query.stream.stream`, the guard of
    ``nightlake sql``), interrupted after ``seconds``; at most ``row_cap`` rows (+ whether
    there were more).

    It runs on a cursor of the lake's shared connection inside a transaction that is always
    rolled back: the tables, views or macros a query creates are never seen by the next
    visitor (a fresh connection would isolate too, at the cost of building the views and
    macros again for every query). :class:`QueryTimeout` when the timer fired.
    """
    import pyarrow as pa

    from nightlake.query.stream import BATCH_ROWS, stream

    check_isolated(query)
    con = lake.cursor()
    fired = threading.Event()

    def stop() -> None:
        fired.set()
        con.interrupt()

    timer = threading.Timer(seconds, stop)
    timer.daemon = True
    try:
        con.execute("BEGIN TRANSACTION")
        timer.start()
        reader = stream(con, query, params, batch_rows=min(BATCH_ROWS, row_cap + 1))
        if cell_cap is not None:  # a wide result: fewer rows, so the page stays a page
            row_cap = max(1, min(row_cap, cell_cap // max(1, len(reader.schema))))
        batches, rows = [], 0
        for batch in reader:
            batches.append(batch)
            rows += batch.num_rows
            if rows > row_cap:
                break
        table = pa.Table.from_batches(batches, reader.schema)
    except QueryError as exc:
        if fired.is_set():
            raise QueryTimeout(
                f"query interrupted after {seconds:g} s (the time limit: limits.query_seconds "
                "in the lake's serve.toml)"
            ) from exc
        raise
    finally:
        timer.cancel()
        _roll_back_and_close(con)
    return SqlResult(table.slice(0, row_cap), table.num_rows > row_cap, row_cap)


def _roll_back_and_close(con) -> None:
    import duckdb

    try:
        con.execute("ROLLBACK")
    except duckdb.Error:  # an interrupted or failed query may have ended it already
        pass
    con.close()


#: Rows of the images left without a detrend listed per type (the count is always whole).
UNRESOLVED_LISTED = 50

_UNRESOLVED = """
SELECT night::VARCHAR AS night, visit, detector, band, filter, exposureTime, obs_time
FROM resolve_detrends($type)
WHERE detrend_index IS NULL
ORDER BY night, obs_time, visit, detector
"""

_COVERAGE_BY_NIGHT = """
SELECT night::VARCHAR AS night, sum(images)::BIGINT AS images, sum(exact)::BIGINT AS exact,
       sum(recent)::BIGINT AS recent, sum(none)::BIGINT AS none,
       coverage_rule(sum(recent), sum(none)) AS rule
FROM coverage($type)
GROUP BY ALL
ORDER BY night
"""


@dataclass(frozen=True)
class DetrendReport:
    """What /detrends shows: the mirror's state and, when it can be read, the audit."""

    state: str  # mirror.Freshness.state
    message: str | None
    findings: list[dict[str, Any]]
    coverage: list[dict[str, Any]]  # type, night, images, exact, recent, none, rule
    unresolved: dict[str, tuple[int, list[dict[str, Any]]]]  # type -> (count, first rows)


def detrend_report(lake: Lake, state: Freshness) -> DetrendReport:
    """The audit findings (:func:`nightlake.detrends.audit.audit`), coverage per type and
    night (the ``coverage`` macro) and the images no record serves, by type; ``state``: the
    mirror's freshness (nothing but it when the mirror cannot be read)."""
    from nightlake.detrends.audit import audit
    from nightlake.detrends.rules import DETREND_TYPES

    if state.state != "fresh":
        return DetrendReport(state.state, state.message, [], [], {})
    images = bool(lake.image_files())
    con = lake.cursor()
    try:
        findings = audit(con, DETREND_TYPES, images=images).to_pylist()
    finally:
        con.close()
    coverage, unresolved = [], {}
    for kind in DETREND_TYPES if images else ():
        rows = lake.sql(_COVERAGE_BY_NIGHT, {"type": kind}).to_pylist()
        coverage += [{"type": kind, **r} for r in rows]
        left = lake.sql(_UNRESOLVED, {"type": kind})
        unresolved[kind] = (left.num_rows, left.slice(0, UNRESOLVED_LISTED).to_pylist())
    return DetrendReport(state.state, None, findings, coverage, unresolved)
