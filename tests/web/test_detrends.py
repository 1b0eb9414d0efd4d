"""/detrends over lakes with and without a detrend mirror, and the stale-mirror banner."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

FIXTURE_DB = Path(__file__).resolve().parents[2] / "data" / "fixtures" / "detreg" / "lp64-little.db"


def _client(lake):
    from starlette.testclient import TestClient

    from nightlake.web.app import create_app

    return TestClient(create_app(lake))


def test_a_lake_without_a_mirror_says_so(client):
    page = client.get("/detrends")
    assert page.status_code == 200
    assert 'id="no-mirror"' in page.text
    assert 'id="findings"' not in page.text
    assert 'id="stale-banner"' not in page.text


@pytest.fixture(scope="module")
def mirrored(web_lake, tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the fixture lake with the fixture DetReg database synced into it."""
    from nightlake import Lake
    from nightlake.detrends.sync import sync

    root = tmp_path_factory.mktemp("mirrored")
    lake, db = root / "lake", root / "detrends.db"
    shutil.copytree(web_lake, lake)
    shutil.copyfile(FIXTURE_DB, db)
    sync(Lake(lake), db)
    return lake, db


def test_detrends_page_shows_every_finding_of_nightlake_audit(mirrored, cli):
    lake, _ = mirrored
    audit = cli("audit", "--lake", lake, "--format", "json")
    expected = json.loads(audit.stdout)
    page = _client(lake).get("/detrends")
    assert page.status_code == 200
    rows = re.findall(r'<tr data-finding="([^"]+)" data-type="([^"]+)">', page.text)
    assert sorted(rows) == sorted((f["finding"], f["type"]) for f in expected)
    assert f'<p id="finding-count">{len(expected)} findings</p>' in page.text
    for kind in {f["type"] for f in expected}:
        counts = re.search(rf'<tr data-type="{kind}">(.*?)</tr>', page.text, re.S).group(1)
        for finding in {f["finding"] for f in expected if f["type"] == kind}:
            n = sum(1 for f in expected if (f["type"], f["finding"]) == (kind, finding))
            assert f'data-finding="{finding}">{n}</td>' in counts


def test_detrends_page_counts_the_images_no_record_serves(mirrored, cli):
    lake, _ = mirrored
    page = _client(lake).get("/detrends").text
    for kind in ("bias", "dark", "flat", "fringe", "mask"):
        query = f"SELECT count(*) FROM resolve_detrends('{kind}') WHERE detrend_index IS NULL"
        done = cli("sql", "--lake", lake, "--format", "csv", query)
        count = int(done.stdout.splitlines()[1])
        assert re.search(rf'<tr data-type="{kind}" data-count="{count}">', page)


def test_coverage_chart_has_one_mark_per_type_and_night(mirrored, cli):
    lake, _ = mirrored
    done = cli("sql", "--lake", lake, "--format", "csv", "SELECT count(DISTINCT night) FROM images")
    nights = int(done.stdout.splitlines()[1])
    page = _client(lake).get("/detrends").text
    marks = int(re.search(r'data-chart="detrend-coverage" data-marks="(\d+)"', page).group(1))
    assert marks == 5 * nights


def test_a_stale_mirror_shows_a_banner_on_every_page_and_is_not_synced(web_lake, tmp_path):
    from nightlake import Lake
    from nightlake.detrends.sync import sync

    lake, db = tmp_path / "lake", tmp_path / "detrends.db"
    shutil.copytree(web_lake, lake)
    shutil.copyfile(FIXTURE_DB, db)
    sync(Lake(lake), db)
    generation = (lake / "detrends").resolve()
    with open(db, "ab") as handle:  # any change of the database's bytes: the mirror is stale
        handle.write(b"\0")
    client = _client(lake)
    for url in ("/", "/night/20190402", "/sql", "/detrends", "/night/19990101"):
        page = client.get(url)
        banner = re.search(r'<div id="stale-banner" role="alert">([^<]*)</div>', page.text)
        assert banner and "nightlake sync" in banner.group(1), url
    assert 'id="mirror-problem"' in client.get("/detrends").text
    assert (lake / "detrends").resolve() == generation  # read, never synced
