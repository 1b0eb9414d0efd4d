"""The pages of ``nightlake serve`` in a real browser: Debian's Chromium driven by Playwright.

The server is the real ``nightlake serve`` process on a loopback port (conftest ``served``).
Every test's page fails on a request that leaves 127.0.0.1, on any console error or warning
and on any uncaught page error. Expectations come from the lake's Parquet files read by polars
(an independent client) and from ``nightlake`` commands run as processes, never from the app.
Each page's screenshot is written under the test's tmp dir.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from .independent import expected_marks, images_frame, lake_nights, nightlake, nightlake_sql
from .live_server import HOST
from .screens import NIGHT, PAGES, VIEWPORT, shoot, wait_for_charts

CHROMIUM = Path(os.environ.get("NIGHTLAKE_CHROMIUM", "/usr/bin/chromium"))
HOW = "apt-get install chromium (or set NIGHTLAKE_CHROMIUM to a Chromium binary)"


def _browser_missing() -> str | None:
    if not CHROMIUM.is_file():
        return f"browser tests skipped: {CHROMIUM} not found — {HOW}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "browser tests skipped: playwright not installed — pip install -e '.[test]'"
    return None


if (_missing := _browser_missing()) is not None:
    if os.environ.get("NIGHTLAKE_REQUIRE_BROWSER"):  # CI: .ci/run installs Chromium
        pytest.fail(_missing.replace("skipped", "required"), pytrace=False)
    pytest.skip(_missing, allow_module_level=True)

from playwright.sync_api import Error as PlaywrightError  # noqa: E402
from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

FWHM_PER_SIGMA = 2.355 * 0.2637  # arcsec per pixel of PSF sigma on DECam (sql/10_seeing.sql)
VISIBLE = re.compile(r"\bvisible\b")  # the class of Vega's tooltip while it shows


class PageGuard:
    """Records what a page must not do: leave loopback, log a console error or warning, throw."""

    def __init__(self) -> None:
        self.outside: list[str] = []
        self.errors: list[str] = []

    def route(self, route) -> None:
        url = route.request.url
        if urlsplit(url).hostname == HOST:
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def console(self, message) -> None:
        # warnings too: Vega and Vega-Lite warn (and go on) when they drop part of a spec
        if message.type in ("error", "warning"):
            where = message.location.get("url")
            self.errors.append(f"console {message.type}: {message.text} ({where})")

    def page_error(self, error) -> None:
        self.errors.append(f"page error: {error}")


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()


@pytest.fixture
def guard() -> PageGuard:
    return PageGuard()


@pytest.fixture
def page(browser, served, guard) -> Page:
    """A fresh page (own context: no cookies or cache between tests), base URL ``served``.

    After the test: no request left loopback, no console error or warning, no page error.
    """
    context = browser.new_context(viewport=VIEWPORT, base_url=served, accept_downloads=True)
    context.route("**/*", guard.route)
    page = context.new_page()
    page.on("console", guard.console)
    page.on("pageerror", guard.page_error)
    yield page
    context.close()
    assert guard.outside == [], f"requests left loopback: {guard.outside}"
    assert guard.errors == [], "\n".join(guard.errors)


# --- helpers ------------------------------------------------------------------------------


def open_page(page: Page, url: str, status: int = 200):
    response = page.goto(url)
    assert response is not None and response.status == status, (url, response and response.status)
    return response


def drawn_marks(page: Page) -> dict[str, int]:
    """Wait until every chart of the page is drawn; chart name → marks found in its SVG.

    Also checks each chart's own ``data-marks`` against the SVG.
    """
    wait_for_charts(page)
    figures = page.locator("figure.chart[data-chart]")
    found = {}
    for i in range(figures.count()):
        figure = figures.nth(i)
        expect(figure).to_have_attribute("data-rendered", "true")
        name = figure.get_attribute("data-chart")
        selector = figure.get_attribute("data-mark-selector")
        assert figure.locator("svg").count() == 1, name
        found[name] = figure.locator(selector).count()
        assert found[name] == int(figure.get_attribute("data-marks")), name
    return found


# --- the guard ----------------------------------------------------------------------------


def test_the_guard_stops_a_request_to_any_other_host(page, guard, served):
    """The guard is not idle: a request to another host name (here ``localhost``, so that
    nothing leaves the machine even if it were let through) is aborted and recorded."""
    elsewhere = served.replace(HOST, "localhost") + "/"
    with pytest.raises(PlaywrightError):
        page.goto(elsewhere)
    assert guard.outside == [elsewhere]
    guard.outside.clear()


# --- the pages ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", PAGES)
def test_every_page_draws_its_charts(page, served_lake, tmp_path, name):
    """Each page at its URL, every chart drawn with the expected marks, no wider than the
    window; its screenshot goes to the test's tmp dir."""
    shot = shoot(page, name, tmp_path)
    expect(page.locator("main#page")).to_have_attribute("data-page", name)
    marks = drawn_marks(page)
    if name in ("nights", "night"):
        assert marks == expected_marks(served_lake, None if name == "nights" else NIGHT)
    elif name == "detrends":
        assert list(marks) == ["detrend-coverage"] and marks["detrend-coverage"] > 0
    assert shot.stat().st_size > 0
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= VIEWPORT["width"], f"{name} scrolls sideways: {width} px wide"


def test_nights_page_lists_every_night_in_order(page, served_lake):
    open_page(page, "/")
    expect(page.locator("main#page")).to_have_attribute("data-page", "nights")
    nights = lake_nights(served_lake)
    rows = page.locator("table#nights tr[data-night]")
    assert [rows.nth(i).get_attribute("data-night") for i in range(rows.count())] == nights


def test_night_page_lists_its_images(page, served_lake):
    import polars as pl

    open_page(page, f"/night/{NIGHT}")
    expect(page.locator("h1#night")).to_contain_text(NIGHT)
    frame = images_frame(served_lake).filter(pl.col("night") == NIGHT)
    shown = page.locator("table#images tr[data-visit]")
    assert shown.count() == frame.height
    pairs = {
        (
            int(shown.nth(i).get_attribute("data-visit")),
            int(shown.nth(i).get_attribute("data-detector")),
        )
        for i in range(shown.count())
    }
    assert pairs == set(zip(frame["visit"], frame["detector"], strict=True))


def test_the_image_form_chooses_columns_and_filters(page, served_lake):
    import polars as pl

    open_page(page, f"/night/{NIGHT}")
    page.locator("form#image-filters select[name=cols]").select_option(["psfSigma", "zeroPoint"])
    page.locator('form#image-filters input[name="f.detector"]').fill("31")
    with page.expect_navigation():
        page.locator("form#image-filters [type=submit]").click()
    # visit and detector always lead: they name each row
    headers = page.locator("table#images th").all_inner_texts()
    assert headers == ["visit", "detector", "psfSigma", "zeroPoint"]
    frame = images_frame(served_lake)
    frame = frame.filter((pl.col("night") == NIGHT) & (pl.col("detector") == 31))
    assert page.locator("table#images tbody tr").count() == frame.height > 0


def test_night_links_to_its_neighbours(page, served_lake):
    nights = lake_nights(served_lake)
    at = nights.index(NIGHT)
    open_page(page, f"/night/{NIGHT}")
    page.locator("a#next-night").click()
    expect(page.locator("h1#night")).to_contain_text(nights[at + 1])
    page.locator("a#prev-night").click()
    page.locator("a#prev-night").click()
    expect(page.locator("h1#night")).to_contain_text(nights[at - 1])
    assert page.locator("a#prev-night").count() == 0  # the first night has none


def test_unknown_night_is_a_404_page(page, guard):
    open_page(page, "/night/19990101", status=404)
    expect(page.locator("p#error")).to_contain_text("19990101")
    _forget_status_errors(guard, 404)


def test_detrends_page_shows_the_audit_findings(page, served_lake):
    open_page(page, "/detrends")
    expect(page.locator("main#page")).to_have_attribute("data-page", "detrends")
    # audit exits 1 when it finds a gap, as the fixture's detrends have
    out = nightlake("audit", "--lake", served_lake, "--format", "csv", ok=(0, 1)).decode()
    audit = list(csv.DictReader(io.StringIO(out)))
    kinds = {(row["finding"], row["type"]) for row in audit}
    findings = page.locator("table#findings tr[data-finding]")
    shown = {
        (findings.nth(i).get_attribute("data-finding"), findings.nth(i).get_attribute("data-type"))
        for i in range(findings.count())
    }
    assert ("gap", "flat") in kinds and ("overlap", "flat") in kinds  # the fixture's own
    assert shown == kinds


# --- the charts are live: tooltips and click-through ---------------------------------------


def test_hovering_each_night_shows_its_numbers(page, served_lake):
    """Every point's tooltip, hovered one by one, against polars' per-night numbers."""
    open_page(page, "/")
    drawn_marks(page)
    figure = page.locator('figure[data-chart="nights-fwhm"]')
    points = figure.locator(figure.get_attribute("data-mark-selector"))
    shown = {}
    for i in range(points.count()):
        points.nth(i).hover()
        rows = dict(line.split("\t", 1) for line in _tooltip(page).splitlines())
        shown[rows.pop("night")] = rows
    assert shown == nights_by_polars(served_lake)


def nights_by_polars(lake: Path) -> dict[str, dict[str, str]]:
    """Per night with a finite psfSigma, the tooltip's rows as the page should format them."""
    import polars as pl

    per_night = (
        images_frame(lake)
        .group_by("night")
        .agg(
            pl.col("psfSigma").filter(pl.col("psfSigma").is_finite()).median().alias("sigma"),
            pl.len().alias("images"),
            pl.col("visit").n_unique().alias("visits"),
            pl.col("target").unique().sort().str.join(", ").alias("targets"),
        )
        .filter(pl.col("sigma").is_not_null())
    )
    return {
        r["night"]: {
            "seeing FWHM (arcsec)": f"{FWHM_PER_SIGMA * r['sigma']:.3f}",
            "images": str(r["images"]),
            "visits": str(r["visits"]),
            "targets": r["targets"],
        }
        for r in per_night.iter_rows(named=True)
    }


def test_clicking_a_night_opens_it_and_a_visit_filters_its_images(page, served_lake):
    import polars as pl

    open_page(page, "/")
    drawn_marks(page)
    figure = page.locator('figure[data-chart="nights-fwhm"]')
    point = figure.locator(figure.get_attribute("data-mark-selector")).first
    point.hover()
    night = next(n for n in images_frame(served_lake)["night"].unique() if n in _tooltip(page))
    with page.expect_navigation():
        point.click()
    assert urlsplit(page.url).path == f"/night/{night}"
    drawn_marks(page)
    figure = page.locator('figure[data-chart="night-fwhm"]')
    point = figure.locator(figure.get_attribute("data-mark-selector")).first
    point.hover()
    visit = int(_tooltip(page).split("visit", 1)[1].split()[0])
    with page.expect_navigation():
        point.click()
    shown = page.locator("table#images tr[data-visit]")
    frame = images_frame(served_lake)
    frame = frame.filter((pl.col("night") == night) & (pl.col("visit") == visit))
    assert shown.count() == frame.height > 0
    assert {shown.nth(i).get_attribute("data-visit") for i in range(shown.count())} == {str(visit)}


def test_clicking_a_detector_lists_its_images(page, served_lake):
    import polars as pl

    open_page(page, f"/night/{NIGHT}")
    drawn_marks(page)
    figure = page.locator('figure[data-chart="focal-plane"]')
    rect = figure.locator(figure.get_attribute("data-mark-selector")).last
    rect.hover()
    detector = int(_tooltip(page).split("detector", 1)[1].split()[0])
    with page.expect_navigation():
        rect.click()
    shown = page.locator("table#images tr[data-detector]")
    frame = images_frame(served_lake)
    frame = frame.filter((pl.col("night") == NIGHT) & (pl.col("detector") == detector))
    assert shown.count() == frame.height > 0
    assert {shown.nth(i).get_attribute("data-detector") for i in range(shown.count())} == {
        str(detector)
    }


def _tooltip(page: Page) -> str:
    tooltip = page.locator("#vg-tooltip-element")
    expect(tooltip).to_have_class(VISIBLE)
    return tooltip.inner_text()


def test_nights_table_links_to_each_night(page):
    open_page(page, "/")
    link = page.locator(f'table#nights tr[data-night="{NIGHT}"] a[href="/night/{NIGHT}"]')
    link.click()
    expect(page.locator("h1#night")).to_contain_text(NIGHT)


# --- SQL ----------------------------------------------------------------------------------

QUERY = (
    "SELECT night, target, count(*) AS images, median(psfSigma) AS sigma FROM images "
    "WHERE night = $night GROUP BY ALL ORDER BY ALL"
)


def test_a_query_typed_into_the_form_shows_its_rows(page, guard, served_lake):
    open_page(page, "/sql")
    page.locator("textarea#q").fill(QUERY)
    with page.expect_navigation():
        page.locator("form#sql-form [type=submit]").click()
    # $night has no value yet: a 400 naming it, and a field for it; fill it and run again
    expect(page.locator("p#error")).to_contain_text("night")
    _forget_status_errors(guard, 400)
    page.locator("input#param-night").fill(NIGHT)
    with page.expect_navigation():
        page.locator("form#sql-form [type=submit]").click()
    expected = list(
        csv.reader(io.StringIO(nightlake_sql(served_lake, QUERY, "csv", night=NIGHT).decode()))
    )
    header = page.locator("table#result th").all_inner_texts()
    assert header == expected[0]
    rows = page.locator("table#result tbody tr")
    assert rows.count() == len(expected) - 1 > 0
    first = rows.first.locator("td").all_inner_texts()
    assert first[:3] == expected[1][:3]
    assert float(first[3]) == pytest.approx(float(expected[1][3]), rel=1e-3)


def test_a_bad_query_is_one_error_line_and_400(page, guard):
    open_page(page, "/sql?" + urlencode({"q": "SELEC night FROM images"}), status=400)
    error = page.locator("p#error")
    expect(error).to_contain_text("syntax")
    assert "\n" not in error.inner_text() and "Traceback" not in page.content()
    _forget_status_errors(guard, 400)


def test_a_write_is_refused_with_403_and_its_reason(page, guard, served_lake, tmp_path):
    target = tmp_path / "written.csv"
    query = f"COPY (SELECT * FROM images) TO '{target}'"
    open_page(page, "/sql?" + urlencode({"q": query}), status=403)
    expect(page.locator("p#error")).to_contain_text("COPY writes files")
    assert not target.exists()
    _forget_status_errors(guard, 403)


def _forget_status_errors(guard: PageGuard, status: int) -> None:
    """Chromium logs a document answered with an error status as a console error; the test
    asked for that status, so that one line is not a failure (any other still is)."""
    guard.errors = [e for e in guard.errors if f"status of {status}" not in e]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_downloads_equal_nightlake_sql(page, served_lake, tmp_path, fmt):
    open_page(page, "/sql?" + urlencode({"q": QUERY, "p.night": NIGHT}))
    with page.expect_download() as info:
        page.locator(f"a#download-{fmt}").click()
    got = tmp_path / f"page.{fmt}"
    info.value.save_as(got)
    want = tmp_path / f"cli.{fmt}"
    nightlake_sql(served_lake, QUERY, fmt, out=want, night=NIGHT)
    if fmt == "csv":
        assert got.read_bytes() == want.read_bytes()
    else:
        import pyarrow.parquet as pq

        assert pq.read_table(got).equals(pq.read_table(want))
