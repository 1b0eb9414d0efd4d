"""``nightlake info``: counts, size, schema with units, stale and missing sources."""

from __future__ import annotations

import json
import os

import pytest

from .conftest import deep_row, write_lake


@pytest.fixture
def sourced_lake(tmp_path):
    """A lake whose two partitions record real source files."""
    src = tmp_path / "src"
    src.mkdir()
    a = src / "20190402_A0a.collection"
    b = src / "20190403_A0a.collection"
    a.write_text("# %ECSV 1.0\nrows of night one\n")
    b.write_text("# %ECSV 1.0\nrows of night two\n")
    rows = [deep_row("A0a", "20190402", 1, d) for d in (1, 2)]
    rows += [deep_row("A0a", "20190403", 2, 1)]
    lake = write_lake(
        tmp_path / "lake", rows, sources={("A0a", "20190402"): [a], ("A0a", "20190403"): [b]}
    )
    return lake, a, b


def info_json(cli, lake):
    result = cli("info", "--lake", lake, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_counts_size_and_schema(cli, hand_lake):
    data = info_json(cli, hand_lake)
    assert data["partitions"] == 3 and data["rows"] == 9
    assert data["targets"] == ["A0a", "B1a"]
    assert (data["nights"], data["first_night"], data["last_night"]) == (2, "20190402", "20190403")
    assert data["size_bytes"] == sum(p.stat().st_size for p in hand_lake.rglob("*.parquet"))
    columns = {c["name"]: c for c in data["columns"]}
    assert columns["exposureTime"]["unit"] == "s" and columns["exposureTime"]["type"] == "DOUBLE"
    assert columns["AIRMASS_1"]["original_name"] == "AIRMASS"
    assert columns["night"]["type"] == "VARCHAR" and "target" in columns
    text = cli("info", "--lake", hand_lake).stdout
    assert "rows:         9" in text and "first 20190402, last 20190403" in text
    assert "exposureTime" in text and "[s]" in text


def test_fresh_touched_changed_and_missing_sources(cli, sourced_lake):
    lake, a, b = sourced_lake
    data = info_json(cli, lake)
    assert data["stale_partitions"] == [] and data["missing_sources"] == []

    os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 5_000_000_000))  # touched only
    assert info_json(cli, lake)["stale_partitions"] == []

    a.write_text("# %ECSV 1.0\nrows of night ONE\n")  # same size, new content
    os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 9_000_000_000))
    b.unlink()
    data = info_json(cli, lake)
    assert [p["partition"] for p in data["stale_partitions"]] == ["target=A0a/night=20190402"]
    assert "sha256" in data["stale_partitions"][0]["sources"][0]["detail"]
    assert [p["partition"] for p in data["missing_sources"]] == ["target=A0a/night=20190403"]
    text = cli("info", "--lake", lake).stdout
    assert "stale partitions: 1" in text and "missing sources: 1" in text
    assert str(a.resolve()) in text


def test_a_grown_source_is_stale_by_size(cli, sourced_lake):
    lake, a, _ = sourced_lake
    a.write_text(a.read_text() + "one more row\n")
    (part,) = info_json(cli, lake)["stale_partitions"]
    assert "size" in part["sources"][0]["detail"]


def test_detector_level_layout(cli, tmp_path):
    rows = [deep_row("A0a", "20190402", 1, d) for d in (1, 2, 3)]
    lake = write_lake(tmp_path / "lake", rows, by_detector=True)
    data = info_json(cli, lake)
    assert data["partitions"] == 3 and data["rows"] == 3
    nightly = cli("sql", "--lake", lake, "SELECT count(*) AS n FROM nightly_stats()")
    assert nightly.stdout.split() == ["n", "1"]


def test_no_lake(cli, tmp_path):
    result = cli("info", "--lake", tmp_path / "nope")
    assert result.exit_code == 1 and "no lake here" in result.stderr
