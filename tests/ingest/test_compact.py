"""Compaction into a year's parts: same rows, incremental, and a compaction cut short between
writing its file and deleting the per-night ones reads the same."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nightlake import Lake
from nightlake.ingest.compact import compact
from nightlake.ingest.convert import ConvertOptions, convert
from nightlake.query.info import lake_info

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"
COLLECTIONS = sorted((FIXTURES / "collections").glob("*.collection"))
COUNTS = "SELECT target, night, count(*) n, sum(visit) v FROM images GROUP BY ALL ORDER BY ALL"


def partitions(lake: Lake) -> list[tuple]:
    return sorted((sorted(p.keys.items()), p.rows, p.stale) for p in lake_info(lake).partitions)


def test_compacting_the_previous_lake_keeps_its_rows_and_partitions(tmp_path):
    lake = Lake(shutil.copytree(FIXTURES / "previous" / "lake", tmp_path / "lake"))
    before, info = lake.sql(COUNTS), lake_info(lake)
    written = compact(lake)
    assert written and all("year=" in str(p) for p in lake.image_files())
    assert Lake(lake.path).sql(COUNTS).equals(before)
    after = lake_info(Lake(lake.path))
    assert [(p.keys, p.rows, p.stale) for p in after.partitions] == [
        (p.keys, p.rows, p.stale) for p in info.partitions
    ]
    assert lake.read_manifest()["format_version"] == 4


def test_adding_nights_rewrites_only_their_years(tmp_path):
    plain, compacted = Lake(tmp_path / "plain"), Lake(tmp_path / "compacted")
    for lake in (plain, compacted):
        convert(lake, COLLECTIONS[:3])
    compact(compacted)
    before = {p: p.stat().st_ino for p in compacted.image_files()}
    convert(plain, COLLECTIONS)
    report = convert(compacted, COLLECTIONS)
    assert report.written
    assert all(p.stat().st_ino == ino for p, ino in before.items())  # 2019 untouched
    assert all("year=" in str(p) for p in compacted.image_files())
    assert Lake(compacted.path).sql(COUNTS).equals(Lake(plain.path).sql(COUNTS))
    assert not convert(compacted, COLLECTIONS).written  # incremental as before


@pytest.mark.parametrize("levels", [("target", "night"), ("target", "night", "detector")])
def test_a_per_night_file_beside_its_compacted_year_supersedes_it(tmp_path, levels):
    """What a compaction killed after its rename and before its deletes leaves; in the
    detector layout the superseded keys hold the detector, cast to text."""
    lake = Lake(tmp_path / "lake")
    convert(lake, COLLECTIONS[:3], ConvertOptions(partition_by=levels))
    per_night = lake.image_files()[0]
    kept = tmp_path / "kept.parquet"
    shutil.copy(per_night, kept)
    before, listed = lake.sql(COUNTS), partitions(lake)
    compact(lake)
    per_night.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(kept, per_night)
    assert Lake(lake.path).sql(COUNTS).equals(before)  # no night twice
    assert partitions(lake) == listed  # nor in info, nor in convert's index
    compact(lake)  # the next writer finishes it
    assert all("year=" in str(p) for p in lake.image_files())
    assert Lake(lake.path).sql(COUNTS).equals(before)


def test_compact_without_a_lake_is_one_error_line(tmp_path):
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "nightlake"),
            "compact",
            "--lake",
            str(tmp_path / "none"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "none" in result.stderr
    assert not (tmp_path / "none").exists()


def test_a_convert_that_brings_the_lake_to_the_threshold_compacts_it(tmp_path, monkeypatch):
    from nightlake.ingest import compact as compact_module

    monkeypatch.setattr(compact_module, "AUTO_COMPACT_FILES", 5)
    plain, lake = Lake(tmp_path / "plain"), Lake(tmp_path / "lake")
    convert(lake, COLLECTIONS[:4])  # below: the per-night form stays
    assert not any("year=" in str(p) for p in lake.image_files())
    assert "layout" not in lake.read_manifest()
    convert(lake, COLLECTIONS)
    assert all("year=" in str(p) for p in lake.image_files())  # every target-year
    assert lake.read_manifest()["layout"] == "compacted"
    monkeypatch.setattr(compact_module, "AUTO_COMPACT_FILES", 10**9)
    convert(plain, COLLECTIONS)
    assert not any("year=" in str(p) for p in plain.image_files())
    assert Lake(lake.path).sql(COUNTS).equals(Lake(plain.path).sql(COUNTS))
