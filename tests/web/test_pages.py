"""Every page over the fixture lake: status, the numbers it shows and the charts' mark
counts, compared with Lake.sql of plain queries (not the macros the pages use)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from nightlake import Lake

PAGES = ["/", "/night/20190402", "/night/20220527", "/detrends", "/sql", "/sql?q=select+1"]
FWHM = "2.355 * 0.2637 * psfSigma"


def _row(html: str, night: str) -> str:
    return re.search(rf'<tr data-night="{night}">.*?</tr>', html, re.S).group(0)


def _cell(row: str, col: str) -> tuple[str, str]:
    """(level, value) of the ``data-col`` cell of a nights row."""
    match = re.search(rf'data-col="{col}" data-level="(\w+)" data-value="([^"]*)"', row)
    return match.group(1), match.group(2)


def _charts(html: str) -> dict[str, tuple[int, dict]]:
    """data-chart → (data-marks, the Vega-Lite spec) of every chart on a page."""
    found = {}
    for figure in re.findall(r"<figure.*?</figure>", html, re.S):
        name = re.search(r'data-chart="([^"]+)"', figure).group(1)
        marks = int(re.search(r'data-marks="(\d+)"', figure).group(1))
        spec = re.search(
            r'<script type="application/json" class="chart-spec">(.*?)</script>', figure, re.S
        )
        found[name] = (marks, json.loads(spec.group(1)))
    return found


def test_nights_page_shows_each_nights_counts_and_medians(client, web_lake):
    expected = (
        Lake(web_lake)
        .sql(
            f"""SELECT night, count(*) AS images, count(DISTINCT visit) AS visits,
                  median({FWHM}) FILTER (WHERE isfinite(psfSigma)) AS fwhm,
                  median(zeroPoint) FILTER (WHERE isfinite(zeroPoint)) AS zp,
                  median(skyBg) FILTER (WHERE isfinite(skyBg)) AS sky
           FROM images GROUP BY night ORDER BY night"""
        )
        .to_pylist()
    )
    page = client.get("/")
    assert page.status_code == 200
    assert re.findall(r'<tr data-night="(\d+)">', page.text) == [r["night"] for r in expected]
    for r in expected:
        row = _row(page.text, r["night"])
        assert f'href="/night/{r["night"]}"' in row
        assert _cell(row, "images")[1] == str(r["images"])
        assert _cell(row, "visits")[1] == str(r["visits"])
        for col, key in (("fwhm", "fwhm"), ("zero_point", "zp"), ("sky", "sky")):
            assert float(_cell(row, col)[1]) == pytest.approx(r[key], rel=1e-12)


def test_nights_cells_are_coloured_against_the_default_thresholds(client):
    page = client.get("/").text
    # 20210518 has a median seeing of 2.31" (bad above 1.8), 20201020 a sky of 901 (warn
    # from 800), 20210507 a zero point of 31.12 (warn below 31.3), 20220527 is fine
    assert _cell(_row(page, "20210518"), "fwhm")[0] == "bad"
    assert _cell(_row(page, "20201020"), "sky")[0] == "warn"
    assert _cell(_row(page, "20210507"), "zero_point")[0] == "warn"
    assert {_cell(_row(page, "20220527"), c)[0] for c in ("fwhm", "zero_point", "sky")} == {"ok"}


def test_nights_charts_have_one_mark_per_night_linking_to_it(client, web_lake):
    nights = Lake(web_lake).sql("SELECT DISTINCT night FROM images ORDER BY 1").column(0)
    charts = _charts(client.get("/").text)
    assert set(charts) == {"nights-fwhm", "nights-zero-point", "nights-sky"}
    for marks, spec in charts.values():
        points = spec["layer"][0]["data"]["values"]
        assert marks == len(points) == len(nights)
        assert [p["href"] for p in points] == [f"/night/{n}" for n in nights.to_pylist()]


def test_night_page_charts_count_visits_and_detectors(client, web_lake):
    lake = Lake(web_lake)
    night = "20190402"
    visits, detectors = (
        lake.sql(
            "SELECT count(DISTINCT visit), count(DISTINCT detector) FROM images WHERE night = $n",
            {"n": night},
        )
        .to_pylist()[0]
        .values()
    )
    page = client.get(f"/night/{night}")
    assert page.status_code == 200
    charts = _charts(page.text)
    for name in ("night-fwhm", "night-zero-point", "night-sky"):
        marks, spec = charts[name]
        assert marks == len(spec["data"]["values"]) == visits
    marks, spec = charts["focal-plane"]
    assert marks == len(spec["data"]["values"]) == detectors


def test_focal_plane_places_each_detector_at_its_corners(client, web_lake):
    """Each rectangle spans its detector's corners relative to the pointing: the medians
    over the night's visits, computed here by numpy from the raw columns."""
    import numpy as np

    night = "20190402"
    rows = (
        Lake(web_lake)
        .sql(
            "SELECT detector, pointing_ra, pointing_dec, ra_tl, ra_tr, ra_br, ra_bl, "
            "dec_tl, dec_tr, dec_br, dec_bl FROM images WHERE night = $n",
            {"n": night},
        )
        .to_pylist()
    )
    _, spec = _charts(client.get(f"/night/{night}").text)["focal-plane"]
    for cell in spec["data"]["values"]:
        mine = [r for r in rows if r["detector"] == cell["detector"]]
        xs = [
            [
                (r[f"ra_{c}"] - r["pointing_ra"]) * np.cos(np.radians(r["pointing_dec"]))
                for c in ("tl", "tr", "br", "bl")
            ]
            for r in mine
        ]
        ys = [[r[f"dec_{c}"] - r["pointing_dec"] for c in ("tl", "tr", "br", "bl")] for r in mine]
        assert cell["x_min_deg"] == pytest.approx(np.median([min(x) for x in xs]), abs=1e-9)
        assert cell["x_max_deg"] == pytest.approx(np.median([max(x) for x in xs]), abs=1e-9)
        assert cell["y_min_deg"] == pytest.approx(np.median([min(y) for y in ys]), abs=1e-9)
        assert cell["y_max_deg"] == pytest.approx(np.median([max(y) for y in ys]), abs=1e-9)


def test_night_page_links_the_neighbouring_nights(client):
    first = client.get("/night/20190401").text
    assert 'id="prev-night"' not in first
    assert re.search(r'id="next-night" href="/night/20190402"', first)
    middle = client.get("/night/20201020").text
    assert re.search(r'id="prev-night" href="/night/20190402"', middle)
    assert re.search(r'id="next-night" href="/night/20210507"', middle)
    assert 'id="next-night"' not in client.get("/night/20220527").text


def _image_rows(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<tr id="image-(\d+)-(\d+)"', html)


def test_image_table_lists_the_nights_images_with_chosen_columns_and_filters(client, web_lake):
    lake = Lake(web_lake)
    night = "20190402"
    everything = lake.sql(
        "SELECT visit, detector FROM images WHERE night = $n ORDER BY 1, 2", {"n": night}
    ).to_pylist()
    page = client.get(f"/night/{night}").text
    assert _image_rows(page) == [(str(r["visit"]), str(r["detector"])) for r in everything]
    visit = everything[3]["visit"]
    filtered = client.get(f"/night/{night}", params={"f.visit": visit, "cols": "band,psfSigma"})
    assert filtered.status_code == 200
    assert {v for v, _ in _image_rows(filtered.text)} == {str(visit)}
    heads = re.findall(r'<th data-col="([^"]+)"', filtered.text)
    assert heads == ["visit", "detector", "band", "psfSigma"]
    low = lake.sql(
        "SELECT count(*) FROM images WHERE night = $n AND psfSigma <= 2.1", {"n": night}
    ).to_pylist()[0]
    ranged = client.get(f"/night/{night}", params={"le.psfSigma": "2.1"})
    assert len(_image_rows(ranged.text)) == list(low.values())[0]


def test_image_table_shows_at_most_row_cap_images_and_says_so(web_lake):
    from starlette.testclient import TestClient

    from nightlake.web.app import create_app
    from nightlake.web.settings import ServeSettings

    with TestClient(create_app(web_lake, ServeSettings(row_cap=10))) as client:
        page = client.get("/night/20190402").text  # 48 images
        assert len(_image_rows(page)) == 10 and 'id="image-cap"' in page
        one_visit = client.get("/night/20190402", params={"f.visit": "845573"}).text
        assert len(_image_rows(one_visit)) == 4 and 'id="image-cap"' not in one_visit


def test_a_lake_without_images_says_so(tmp_path):
    from starlette.testclient import TestClient

    from nightlake.web.app import create_app

    (tmp_path / "lake").mkdir()
    with TestClient(create_app(tmp_path / "lake")) as client:
        assert 'id="no-images"' in client.get("/").text
        assert client.get("/night/20190402").status_code == 404
        assert 'id="no-mirror"' in client.get("/detrends").text


@pytest.mark.parametrize(
    "query",
    [{"cols": "no_such_column"}, {"f.no_such": "1"}, {"ge.psfSigma": "not a number"}],
)
def test_bad_image_filters_are_a_400_with_one_error_line(client, query):
    page = client.get("/night/20190402", params=query)
    assert page.status_code == 400
    assert re.search(r'<p id="error" class="error">[^<\n]+</p>', page.text)
    assert "Traceback" not in page.text


@pytest.mark.parametrize("url", ["/night/19990101", "/no/such/page", "/night/20190402/more"])
def test_unknown_night_or_url_is_a_404_page(client, url):
    page = client.get(url)
    assert page.status_code == 404
    assert '<p id="error"' in page.text


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
@pytest.mark.parametrize("url", ["/", "/night/20190402", "/sql", "/sql.csv", "/static/charts.js"])
def test_only_get_is_allowed(client, method, url):
    assert getattr(client, method)(url).status_code == 405


class _Scripts(HTMLParser):
    """Every <script>, <style> and style="" of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict] = []
        self.styles = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self.scripts.append(attrs)
        if tag == "style" or "style" in attrs or any(a.startswith("on") for a in attrs):
            self.styles += 1


@pytest.mark.parametrize("url", PAGES + ["/night/19990101", "/sql?q=selec"])
def test_every_page_has_a_strict_csp_and_no_inline_script_or_style(client, url):
    page = client.get(url)
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    found = _Scripts()
    found.feed(page.text)
    for script in found.scripts:  # a file of ours, or data that never runs
        assert (
            script.get("src", "").startswith("/static/") or script.get("type") == "application/json"
        )
    assert found.styles == 0


def test_every_asset_a_page_names_is_served_from_the_app(client):
    for url in PAGES:
        html = client.get(url).text
        for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
            assert client.get(asset).status_code == 200, asset
        assert not re.search(r'(?:src|href)="(?:https?:)?//', html)  # nothing from elsewhere


def test_on_loopback_only_loopback_host_names_are_answered(web_lake):
    """A page elsewhere that rebinds its own name to 127.0.0.1 gets nothing."""
    from starlette.testclient import TestClient

    from nightlake.web.app import allowed_hosts, create_app

    app = create_app(web_lake, hosts=allowed_hosts("127.0.0.1"))
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        assert client.get("/").status_code == 200
        assert client.get("/", headers={"host": "localhost:8000"}).status_code == 200
        assert client.get("/", headers={"host": "evil.example:8000"}).status_code == 400
    assert allowed_hosts("0.0.0.0") == ["*"]
    # every loopback address is loopback: 127.0.0.2 answers its own name and no other
    assert "*" not in allowed_hosts("127.0.0.2") and "127.0.0.2" in allowed_hosts("127.0.0.2")
    assert "*" not in allowed_hosts("::1") and allowed_hosts("192.168.1.5") == ["*"]
    for loopback in ("LOCALHOST", "localhost.", "::ffff:127.0.0.1"):
        assert "*" not in allowed_hosts(loopback), loopback


def test_a_bug_of_ours_is_a_500_page_with_the_security_headers(web_lake, monkeypatch):
    """Starlette answers an unexpected error outside every middleware: the page still
    carries the CSP and friends, and no traceback."""
    from starlette.testclient import TestClient

    from nightlake.web import app as web_app
    from nightlake.web.app import create_app

    def broken(self):
        raise RuntimeError("a bug")

    monkeypatch.setattr(web_app.Site, "settings", broken)
    with TestClient(create_app(web_lake), raise_server_exceptions=False) as client:
        page = client.get("/sql")
    assert page.status_code == 500 and "Traceback" not in page.text
    for name, value in web_app.SECURITY_HEADERS:
        assert page.headers[name.decode()] == value.decode()


def test_pages_follow_the_lake_when_it_changes(lake_copy):
    """The pages' data is reused between requests only while the lake stays as it was."""
    from starlette.testclient import TestClient

    from nightlake.web.app import create_app

    with TestClient(create_app(lake_copy)) as client:
        assert '<tr data-night="20220527">' in client.get("/").text
        assert client.get("/night/20220527").status_code == 200
        for part in (lake_copy / "images").glob("target=*/night=20220527/*.parquet"):
            part.unlink()
        assert '<tr data-night="20220527">' not in client.get("/").text
        assert client.get("/night/20220527").status_code == 404
        assert 'id="next-night"' not in client.get("/night/20211005").text


def test_a_page_lists_the_lake_once_and_reuses_the_mirror_freshness(lake_copy, monkeypatch):
    """The pages' cache is checked against one listing of the image files per request (the
    night page listed them twice), and the mirror's freshness is computed again only when
    the mirror or its database changed (every page computed it, /detrends twice)."""
    from starlette.testclient import TestClient

    from nightlake.detrends import mirror
    from nightlake.web.app import create_app

    listings, checks = [], []
    image_files, freshness = Lake.image_files, mirror.freshness

    def counted_listing(self):
        listings.append(self)
        return image_files(self)

    def counted_freshness(lake):
        checks.append(lake)
        return freshness(lake)

    monkeypatch.setattr(Lake, "image_files", counted_listing)
    monkeypatch.setattr(mirror, "freshness", counted_freshness)
    with TestClient(create_app(lake_copy)) as client:
        for url in ("/night/20190402", "/detrends", "/"):  # warm: every cache filled
            assert client.get(url).status_code == 200
        listings.clear(), checks.clear()
        for url in ("/night/20190402", "/night/20220527", "/detrends", "/"):
            before = len(listings)
            assert client.get(url).status_code == 200
            assert len(listings) - before == 1, url
        assert client.get("/sql").status_code == 200
        assert checks == []


def test_the_image_table_shows_a_value_as_the_sql_page_does(client, web_lake):
    """One cell formatter: an image's time and a missing psfSigma read the same in the night's
    table and in /sql's (the image table had its own: '' for NaN, times cut to the ms)."""
    row = (
        Lake(web_lake)
        .sql(
            "SELECT night, visit, detector FROM images WHERE psfSigma IS NULL OR isnan(psfSigma) "
            "ORDER BY ALL LIMIT 1"
        )
        .to_pylist()[0]
    )
    night, visit, detector = row["night"], row["visit"], row["detector"]
    page = client.get(
        f"/night/{night}",
        params={"f.visit": visit, "f.detector": detector, "cols": "obs_time,psfSigma"},
    ).text
    tr = re.search(rf'<tr id="image-{visit}-{detector}".*?</tr>', page, re.S).group(0)
    shown = re.findall(r"<td>(.*?)</td>", tr)
    query = (
        "SELECT visit, detector, obs_time, psfSigma FROM images "
        f"WHERE night = '{night}' AND visit = {visit} AND detector = {detector}"
    )
    sql = client.get("/sql", params={"q": query}).text
    body = re.search(r'<table id="result".*?</table>', sql, re.S).group(0)
    expected = re.findall(r"<td[^>]*>(.*?)</td>", re.findall(r"<tr>(.*?)</tr>", body)[-1])
    assert shown == expected and shown[3] in ("nan", "NULL")
