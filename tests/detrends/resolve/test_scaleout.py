"""Resolve in chunks and on a Dask cluster equals the local resolve, row for row.

One LocalCluster (2 worker processes, the ``dask_client`` fixture) serves the whole module.
Rows are compared as sorted lists of full rows (every column), because the local ASOF join
promises no row order.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nightlake import Lake
from nightlake.detrends.chunks import write_assignments_chunked
from nightlake.detrends.rules import DETREND_TYPES, MODES, write_assignments
from nightlake.scaleout import DaskExecutor, Executor, ExecutorError

from .conftest import utc, write_detreg, write_images
from .test_properties import images, records

distributed = pytest.importorskip("distributed")

TARGETS = ["A0a", "B1b", "C2c"]
NIGHTS = ["20190401", "20190402", "20190403"]


@st.composite
def lake_images(draw):
    imgs = draw(st.lists(images(), min_size=1, max_size=12))
    return [
        dict(
            img,
            visit=i,
            target=draw(st.sampled_from(TARGETS)),
            night=draw(st.sampled_from(NIGHTS)),
            obs_time=utc(0) + timedelta(microseconds=img["time_us"]),
        )
        for i, img in enumerate(imgs)
    ]


def _make_lake(tmp: Path, recs, rows) -> Lake:
    from nightlake.detrends.sync import sync

    db_path = write_detreg(tmp / "detrend.db", recs)
    write_images(tmp / "lake", [{k: v for k, v in r.items() if k != "time_us"} for r in rows])
    lake = Lake(tmp / "lake")
    sync(lake, db_path)
    return lake


def _rows(path: Path):
    """Every row of a resolve output (a file or a directory of parts), sorted; and its schema."""
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    tables = [pq.read_table(f) for f in files]
    schema = tables[0].schema
    for t in tables:
        assert t.schema.equals(schema, check_metadata=True)
    # repr: NaN equals NaN, and None sorts among values
    return sorted(repr(tuple(r.values())) for t in tables for r in t.to_pylist()), schema


def _split(draw, files):
    """A random split of the file list into consecutive, non-empty chunks."""
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(files) - 1)), max_size=4))))
    bounds = [0, *[c for c in cuts if c < len(files)], len(files)]
    return [files[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(records(), lake_images(), st.data())
def test_chunked_resolve_equals_the_whole(recs, rows, data):
    tmp = Path(tempfile.mkdtemp(prefix="nl-chunk-"))
    try:
        lake = _make_lake(tmp, recs, rows)
        kind = data.draw(st.sampled_from(DETREND_TYPES))
        mode = data.draw(st.sampled_from(MODES))
        chunks = _split(data.draw, lake.image_files())
        whole = write_assignments(lake, kind, mode, tmp / "whole.parquet")
        parts = write_assignments_chunked(
            lake, kind, mode, tmp / "parts", Executor(), chunks=chunks
        )
        assert parts == whole
        assert _rows(tmp / "parts") == _rows(tmp / "whole.parquet")
        assert len(list((tmp / "parts").iterdir())) == len(chunks)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(records(), lake_images(), st.sampled_from(DETREND_TYPES), st.sampled_from(MODES))
def test_dask_resolve_equals_the_local_run(dask_client, recs, rows, kind, mode):
    tmp = Path(tempfile.mkdtemp(prefix="nl-dask-"))
    try:
        lake = _make_lake(tmp, recs, rows)
        write_assignments(lake, kind, mode, tmp / "local.parquet")
        write_assignments_chunked(
            lake,
            kind,
            mode,
            tmp / "dask",
            DaskExecutor.from_client(dask_client),
            chunks=[[f] for f in lake.image_files()],
        )
        assert _rows(tmp / "dask") == _rows(tmp / "local.parquet")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_dask_resolve_of_the_previous_fixture_lake(dask_client, tmp_path, fixtures_dir):
    from nightlake.detrends.sync import sync

    shutil.copytree(fixtures_dir / "previous" / "lake", tmp_path / "lake")
    shutil.copy(fixtures_dir / "previous" / "detrends.db", tmp_path / "detrends.db")
    lake = Lake(tmp_path / "lake")
    sync(lake, tmp_path / "detrends.db")
    for kind in ("bias", "flat", "dark"):
        local = write_assignments(lake, kind, "recent", tmp_path / f"{kind}.parquet")
        dask = write_assignments_chunked(
            lake,
            kind,
            "recent",
            tmp_path / kind,
            DaskExecutor.from_client(dask_client),
            chunks=[[f] for f in lake.image_files()],
        )
        assert dask == local and local[0] > 0
        assert _rows(tmp_path / kind) == _rows(tmp_path / f"{kind}.parquet")


def _killed_once(chunk, *, marker, **kwargs):
    """resolve_chunk, but the first task to run kills its worker process first."""
    from nightlake.detrends.chunks import resolve_chunk

    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return resolve_chunk(chunk, **kwargs)
    os.close(fd)
    os._exit(1)


def test_a_worker_killed_mid_task_is_retried_and_the_result_equals_a_clean_run(
    dask_client, tmp_path
):
    recs = [
        dict(
            tstart=1_554_000_000,
            tstop=2**64 - 1,
            treg=1,
            type=1,
            filter=-1,
            ccd=1,
            sigma=1.5,
            clipsigma=2.5,
            filename="/masters/bias.fits",
            flag1=0,
            flag2=0,
        )
    ]
    rows = [
        dict(
            visit=i,
            detector=1,
            filter="VR",
            band="VR",
            exposureTime=30.0,
            target=TARGETS[i % 3],
            night=NIGHTS[i % 2],
            obs_time=utc(1_554_100_000 + i),
        )
        for i in range(12)
    ]
    lake = _make_lake(tmp_path, recs, rows)
    write_assignments(lake, "bias", "exact", tmp_path / "clean.parquet")

    class Killing(DaskExecutor):
        def map(self, fn, items, **kwargs):
            return super().map(_killed_once, items, marker=str(tmp_path / "killed"), **kwargs)

    runner = Killing.from_client(dask_client)
    counts = write_assignments_chunked(lake, "bias", "exact", tmp_path / "out", runner)
    assert (tmp_path / "killed").exists()
    assert counts == (12, 12)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["part-00000.parquet"]
    assert _rows(tmp_path / "out") == _rows(tmp_path / "clean.parquet")
    dask_client.wait_for_workers(2)


def test_a_worker_that_cannot_see_the_lake_is_named(dask_client, tmp_path):
    with pytest.raises(ExecutorError, match=r"cannot see the lake.*filesystem every worker"):
        DaskExecutor.from_client(dask_client).check_visible(tmp_path / "elsewhere")


def test_cli_resolve_through_a_local_cluster(tmp_path, fixtures_dir):
    from nightlake.detrends.sync import sync

    shutil.copytree(fixtures_dir / "previous" / "lake", tmp_path / "lake")
    shutil.copy(fixtures_dir / "previous" / "detrends.db", tmp_path / "detrends.db")
    sync(Lake(tmp_path / "lake"), tmp_path / "detrends.db")
    nightlake = Path(sys.executable).with_name("nightlake")
    args = ["resolve", "--type", "flat", "--lake", str(tmp_path / "lake")]
    subprocess.run([nightlake, *args, "-o", tmp_path / "local.parquet"], check=True)
    done = subprocess.run(
        [nightlake, *args, "-o", tmp_path / "dask", "--executor", "dask", "--workers", "1"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    assert _rows(tmp_path / "dask") == _rows(tmp_path / "local.parquet")


def test_cli_unreachable_scheduler_is_one_line(tmp_path, fixtures_dir):
    shutil.copytree(fixtures_dir / "previous" / "lake", tmp_path / "lake")
    nightlake = Path(sys.executable).with_name("nightlake")
    done = subprocess.run(
        [nightlake, "resolve", "--type", "bias", "--lake", tmp_path / "lake", "-o"]
        + [tmp_path / "out", "--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"],
        capture_output=True,
        text=True,
        env={**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"},
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "tcp://127.0.0.1:9" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--scheduler", "tcp://127.0.0.1:9"],
        ["--workers", "2"],
        ["--executor", "spark"],
        ["--executor", "dask", "--workers", "0"],
    ],
)
def test_cli_executor_options_that_cannot_work(cli, tmp_path, args):
    result = cli("resolve", "--type", "bias", "-o", str(tmp_path / "o"), *args)
    assert result.exit_code == 2, result.output


def test_chunked_resolve_of_a_compacted_lake_with_a_superseding_night(tmp_path, fixtures_dir):
    """Chunks of compacted files and a per-night file that supersedes its night: each chunk
    takes exactly the rows the images view takes from its files (no night twice)."""
    from nightlake.detrends.sync import sync
    from nightlake.ingest.compact import compact

    lake = Lake(shutil.copytree(fixtures_dir / "previous" / "lake", tmp_path / "lake"))
    per_night = lake.image_files()[0]
    kept = tmp_path / "kept.parquet"
    shutil.copy(per_night, kept)
    compact(lake)
    per_night.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(kept, per_night)
    shutil.copy(fixtures_dir / "previous" / "detrends.db", tmp_path / "detrends.db")
    sync(lake, tmp_path / "detrends.db")
    files = lake.image_files()
    assert any("year=" in str(f) for f in files) and per_night in files
    local = write_assignments(lake, "flat", "recent", tmp_path / "local.parquet")
    parts = write_assignments_chunked(
        lake, "flat", "recent", tmp_path / "parts", Executor(), chunks=[[f] for f in files]
    )
    assert parts == local
    assert _rows(tmp_path / "parts") == _rows(tmp_path / "local.parquet")


def test_verify_rederives_a_dask_output_directory(dask_client, tmp_path, cli):
    """verify on the parts of --executor dask: clean, still clean after a later registration
    (it replays to the recorded journal position), and a hand-edited row in one part found."""
    import pyarrow as pa

    from nightlake.detrends.detreg import init_db, register
    from nightlake.detrends.provenance import verify
    from nightlake.detrends.sync import sync

    from ..detreg.test_as_of_lake import flat
    from ..detreg.test_as_of_lake import write_images as write_lake

    write_lake(tmp_path / "lake")
    db = tmp_path / "d.db"
    init_db(db)
    register(db, [flat(1, "g", 0, 2, 0, "g1a"), flat(2, "r", 1, 3, 0, "r2")])
    lake = Lake(tmp_path / "lake")
    sync(lake, db)
    out = tmp_path / "parts"
    runner = DaskExecutor.from_client(dask_client)
    write_assignments_chunked(
        lake, "flat", "recent", out, runner, chunks=[[f] for f in lake.image_files()]
    )
    assert verify(out) == []
    register(db, [flat(1, "g", 0, 5, 9, "newer")])  # the lake's mirror follows it
    assert verify(out) == []
    result = cli("verify", str(out))
    assert result.exit_code == 0 and "verified: flat (recent mode)" in result.output

    part = sorted(out.glob("part-*.parquet"))[1]
    table = pq.read_table(part)
    names = table.column("detrend_filename").to_pylist()
    names[0] = "/m/edited.fits"
    column = table.schema.get_field_index("detrend_filename")
    pq.write_table(table.set_column(column, "detrend_filename", pa.array(names)), part)
    diffs = verify(out)
    assert len(diffs) == 1 and diffs[0].recorded["detrend_filename"] == "/m/edited.fits"
    result = cli("verify", str(out))
    assert result.exit_code == 1 and "/m/edited.fits" in result.output
