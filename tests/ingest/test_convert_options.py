"""Partition-shaping options (``--time-scale``, ``--partition-by``) are part of the
incremental check: a lake never mixes them silently, and ``info`` reports what differs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nightlake import Lake
from nightlake.errors import UsageError
from nightlake.ingest.convert import (
    FORMAT_VERSION,
    ConvertOptions,
    convert,
)
from nightlake.lake import read_partition_metadata
from nightlake.query.info import lake_info

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"
COLLECTIONS = FIXTURES / "collections"
PREVIOUS = FIXTURES / "previous"


def _sources(tmp_path: Path) -> tuple[Path, Path]:
    """The fixture collections split in two directories."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for i, path in enumerate(sorted(COLLECTIONS.glob("*.collection"))):
        shutil.copy2(path, (a if i % 2 else b) / path.name)
    return a, b


def _written_with(lake: Lake) -> dict[str, str]:
    return {
        str(p.relative_to(lake.images_dir)): read_partition_metadata(p)["time_scale"]
        for p in lake.image_files()
    }


@pytest.mark.parametrize(
    "before, after",
    [
        ({"time_scale": "tai"}, {"time_scale": "utc"}),
        ({"time_scale": "utc"}, {"time_scale": "tai"}),
        ({"partition_by": ("target", "night")}, {"partition_by": ("target", "night", "detector")}),
        ({"partition_by": ("target", "night", "detector")}, {"partition_by": ("target", "night")}),
    ],
)
def test_another_option_refuses_without_force_and_rewrites_with_it(tmp_path, before, after):
    lake = Lake(tmp_path / "lake")
    assert convert(lake, [COLLECTIONS], ConvertOptions(**before)).ok
    files = {p: p.stat().st_mtime_ns for p in lake.image_files()}
    ((name, value),) = after.items()
    shown = ",".join(value) if isinstance(value, tuple) else value
    with pytest.raises(
        UsageError,
        match=f"--force to rewrite its partitions with --{name.replace('_', '-')} {shown}",
    ):
        convert(lake, [COLLECTIONS], ConvertOptions(**after))
    assert {p: p.stat().st_mtime_ns for p in lake.image_files()} == files
    report = convert(lake, [COLLECTIONS], ConvertOptions(**after, force=True))
    assert report.ok and report.unchanged == 0
    assert {
        json.dumps(read_partition_metadata(p)["options"], sort_keys=True)
        for p in lake.image_files()
    } == {json.dumps(ConvertOptions(**after).shaping(), sort_keys=True)}
    assert not lake_info(lake).stale
    again = convert(lake, [COLLECTIONS], ConvertOptions(**after))
    assert again.ok and not again.written


def test_a_run_with_new_options_cut_short_leaves_the_rest_stale_and_is_resumed(cli, tmp_path):
    """``--force --time-scale utc`` that got through only some partitions (here: given only
    some of the sources) leaves the others TAI: info says so, and the next run rewrites
    just those."""
    a, b = _sources(tmp_path)
    lake = Lake(tmp_path / "lake")
    assert convert(lake, [a, b]).ok
    assert convert(lake, [a], ConvertOptions(time_scale="utc", force=True)).ok
    scales = _written_with(lake)
    tai = {p for p, scale in scales.items() if scale == "tai"}
    assert tai and len(tai) < len(scales)
    stale = lake_info(lake).stale
    assert {str(p.path.relative_to(lake.images_dir)) for p in stale} == tai
    assert all(p.other_options == ["--time-scale tai (the lake: --time-scale utc)"] for p in stale)
    shown = cli("info", "--lake", lake.path)
    assert f"stale partitions: {len(tai)}" in shown.stdout
    assert "written with --time-scale tai (the lake: --time-scale utc)" in shown.stdout
    refused = cli("convert", a, b, "--lake", lake.path)  # the default, tai: not silently
    assert refused.exit_code == 2 and "converted with --time-scale utc" in refused.stderr
    utc_files = {
        p: p.stat().st_mtime_ns
        for p in lake.image_files()
        if str(p.relative_to(lake.images_dir)) not in tai
    }
    report = convert(lake, [a, b], ConvertOptions(time_scale="utc"))
    assert report.ok and len(report.written) == len(tai)
    assert set(_written_with(lake).values()) == {"utc"}
    assert {p: p.stat().st_mtime_ns for p in utc_files} == utc_files
    assert not lake_info(lake).stale


def test_a_lake_of_the_previous_format_is_taken_as_tai(tmp_path):
    lake = Lake(tmp_path / "lake")
    shutil.copytree(PREVIOUS / "lake", lake.path)
    assert json.loads(lake.manifest_path.read_text())["format_version"] == 1
    assert not lake_info(lake).stale  # its sources are gone, but its options are the lake's
    src = tmp_path / "src"
    shutil.copytree(PREVIOUS / "src", src)
    with pytest.raises(UsageError, match="converted with --time-scale tai"):
        convert(lake, [src], ConvertOptions(time_scale="utc"))
    report = convert(lake, [src])
    assert report.ok and len(report.written) == 2
    manifest = json.loads(lake.manifest_path.read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["options"] == {"partition_by": ["target", "night"], "time_scale": "tai"}
    assert not lake_info(lake).stale


def test_a_lake_of_a_newer_format_is_refused(tmp_path):
    lake = Lake(tmp_path / "lake")
    assert convert(lake, [COLLECTIONS / "20190401_A0a.collection"]).ok
    lake.manifest_path.write_text(
        json.dumps({**json.loads(lake.manifest_path.read_text()), "format_version": 99})
    )
    with pytest.raises(Exception, match="lake format 99 is newer .* upgrade nightlake"):
        convert(lake, [COLLECTIONS / "20190401_A0a.collection"])
    assert pq.read_metadata(lake.image_files()[0]).num_rows > 0
