"""Convert through a Dask cluster writes the same lake as the local convert, byte for byte.

Byte equality holds, not only equal values: the tasks run the same functions (``_read_one``,
``_write_job``) on the same pyarrow and the same sources, and a partition's metadata records
nothing of where it was written (the sources' fingerprints, the options, the nightlake
version; Parquet's ``created_by`` names the same pyarrow). One LocalCluster (2 worker
processes, the ``dask_client`` fixture) serves the whole module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from astropy.table import Table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import ecsv_tables

from nightlake import Lake
from nightlake.ingest.compact import FOOTERS
from nightlake.ingest.convert import ConvertOptions, ConvertReport, convert
from nightlake.scaleout import DaskExecutor, Executor

pytest.importorskip("distributed")

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"
COLLECTIONS = FIXTURES / "collections"
JOINED = FIXTURES / "joined" / "joined.collection"
SHARDED = FIXTURES / "sharded"
NIGHTLAKE = Path(sys.executable).with_name("nightlake")


def _files(lake: Lake) -> dict[str, bytes]:
    """Every file of the lake (partitions and nightlake.json; not the lock, nor the footer
    cache, whose stamps are of the files' inodes) by relative path."""
    return {
        str(p.relative_to(lake.path)): p.read_bytes()
        for p in sorted(lake.path.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock") and p.name != FOOTERS
    }


def _summary(report: ConvertReport, lake: Lake) -> tuple:
    return (
        sorted(str(p.relative_to(lake.path)) for p in report.written),
        sorted(str(p.relative_to(lake.path)) for p in report.removed),
        report.rows_written,
        report.sources_read,
        report.unchanged,
        report.renames,
        sorted((where, str(error)) for where, error in report.failed),
    )


def _both(
    tmp: Path, sources, dask_client, options=ConvertOptions()
) -> tuple[Lake, Lake, ConvertReport]:
    """Convert ``sources`` locally and through the cluster into two lakes (the same two on
    every call: incremental); assert the reports are equal."""
    here, there = Lake(tmp / "local"), Lake(tmp / "dask")
    local = convert(here, sources, options)
    remote = convert(there, sources, options, executor=DaskExecutor.from_client(dask_client))
    assert _summary(remote, there) == _summary(local, here)
    return here, there, local


def test_the_fixture_collections_give_the_same_bytes(dask_client, tmp_path):
    sources = [COLLECTIONS, JOINED, SHARDED]  # per-night, joined and sharded feed one partition
    here, there, _ = _both(tmp_path, sources, dask_client)
    files = _files(here)
    assert sum(name.endswith(".parquet") for name in files) == len(list(COLLECTIONS.iterdir()))
    assert _files(there) == files


def test_by_detector_too(dask_client, tmp_path):
    options = ConvertOptions(partition_by=("target", "night", "detector"))
    here, there, _ = _both(tmp_path, [SHARDED, JOINED], dask_client, options)
    assert len(here.image_files()) > len(list(COLLECTIONS.iterdir()))
    assert _files(there) == _files(here)


def test_progress_counts_every_read_and_every_partition(dask_client, tmp_path):
    seen: dict[str, list[tuple[int, int]]] = {"read": [], "write": []}
    report = convert(
        Lake(tmp_path / "lake"),
        [COLLECTIONS, JOINED],
        progress=lambda stage, done, total, label: seen[stage].append((done, total)),
        executor=DaskExecutor.from_client(dask_client),
    )
    sources, partitions = len(list(COLLECTIONS.iterdir())) + 1, len(report.written)
    assert seen["read"] == [(i, sources) for i in range(1, sources + 1)]
    assert seen["write"] == [(i, partitions) for i in range(1, partitions + 1)]


def test_the_local_executor_runs_the_same_tasks(tmp_path):
    """The executor interface without a cluster: tasks in this process, one after another."""
    here, there = Lake(tmp_path / "a"), Lake(tmp_path / "b")
    convert(here, [COLLECTIONS, JOINED, SHARDED])
    convert(there, [COLLECTIONS, JOINED, SHARDED], executor=Executor())
    assert _files(there) == _files(here)


PICKS = sorted(COLLECTIONS.glob("*.collection")) + [JOINED] + sorted(SHARDED.glob("*/*"))
NAMES = [f"{night}_{target}" for night in ("20190402", "20190403") for target in ("A0a", "Zz9")]


@st.composite
def source_sets(draw):
    """Some fixture inputs, and maybe a random table named for a night/target (which may
    also come from a fixture input: then the two disagree, and both runs must say so)."""
    picks = draw(st.lists(st.sampled_from(PICKS), min_size=1, max_size=4, unique=True))
    extra = draw(st.none() | st.tuples(st.sampled_from(NAMES), ecsv_tables()))
    return picks, extra


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(source_sets())
def test_random_source_sets_give_the_same_lake(dask_client, sources):
    picks, extra = sources
    tmp = Path(tempfile.mkdtemp(prefix="nl-convert-dask-"))
    try:
        if extra is not None:
            name, table = extra
            table.write(tmp / f"{name}.collection", format="ascii.ecsv")
            picks = [*picks, tmp / f"{name}.collection"]
        here, there, _ = _both(tmp, picks, dask_client)
        assert _files(there) == _files(here)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_an_incremental_convert_through_the_cluster(dask_client, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(COLLECTIONS, src)
    _both(tmp_path, [src], dask_client)
    victim = sorted(src.glob("*.collection"))[0]
    table = Table.read(victim, format="ascii.ecsv")
    table[:-1].write(victim, format="ascii.ecsv", overwrite=True)
    here, there, report = _both(tmp_path, [src], dask_client)
    assert len(report.written) == 1 and report.unchanged == len(list(src.iterdir())) - 1
    assert _files(there) == _files(here)
    assert _both(tmp_path, [src], dask_client)[2].written == []  # and then nothing at all


def _killed_once(job, *, marker, **kwargs):
    """_write_job, but the first task to run writes its partition's temp file and then kills
    its worker before moving it into place."""
    from nightlake.ingest.convert import _write_job

    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return _write_job(job, **kwargs)
    os.close(fd)
    _write_job(job, **{**kwargs, "commit": False})
    os._exit(1)


def _read_killed_once(source, *, marker, **kwargs):
    """_read_one, but the first read kills its worker (reads stay on their worker: the
    partitions that need a lost one have it read again)."""
    from nightlake.ingest.convert import _read_one

    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return _read_one(source, **kwargs)
    os.close(fd)
    os._exit(1)


@pytest.mark.parametrize("stage", ["read", "write"])
def test_a_worker_killed_mid_task_is_retried_and_equals_a_clean_run(dask_client, tmp_path, stage):
    from nightlake.ingest.convert import _write_job

    marker = str(tmp_path / "killed")

    class Killing(DaskExecutor):
        def map(self, fn, items, **kwargs):
            if stage == "write" and fn is _write_job:
                return super().map(_killed_once, items, marker=marker, **kwargs)
            return super().map(fn, items, **kwargs)

        def keep(self, fn, items, **kwargs):
            if stage == "read":
                return super().keep(_read_killed_once, items, marker=marker, **kwargs)
            return super().keep(fn, items, **kwargs)

    sources = [COLLECTIONS, JOINED]
    clean = Lake(tmp_path / "clean")
    convert(clean, sources)
    lake = Lake(tmp_path / "lake")
    report = convert(lake, sources, executor=Killing.from_client(dask_client))
    assert Path(marker).exists()
    assert report.ok, report.failed
    assert _files(lake) == _files(clean)  # no temp file, no partial partition
    dask_client.wait_for_workers(2)


def test_two_converts_exclude_each_other(dask_client, tmp_path):
    """A convert through the cluster holds the lake lock while its tasks run: a second one
    (through the same cluster) waits, then gives up."""
    lake = Lake(tmp_path / "lake")
    address = dask_client.scheduler.address
    second: list[subprocess.CompletedProcess] = []

    class Racing(DaskExecutor):
        def keep(self, fn, items, **kwargs):
            if not second:  # the first convert is reading: it holds the lock
                second.append(
                    subprocess.run(
                        [NIGHTLAKE, "convert", COLLECTIONS, "--lake", lake.path]
                        + ["--executor", "dask", "--scheduler", address, "--lock-timeout", "0.2"],
                        capture_output=True,
                        text=True,
                    )
                )
            return super().keep(fn, items, **kwargs)

    assert convert(lake, [COLLECTIONS], executor=Racing.from_client(dask_client)).ok
    (done,) = second
    assert done.returncode == 1
    assert "lake locked by another process" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_cli_convert_through_a_local_cluster(tmp_path):
    args = ["convert", COLLECTIONS, JOINED]
    subprocess.run([NIGHTLAKE, *args, "--lake", tmp_path / "local"], check=True)
    done = subprocess.run(
        [NIGHTLAKE, *args, "--lake", tmp_path / "dask", "--executor", "dask", "--workers", "1"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "partition(s) written" in done.stdout
    assert _files(Lake(tmp_path / "dask")) == _files(Lake(tmp_path / "local"))


def test_cli_unreachable_scheduler_is_one_line(tmp_path):
    done = subprocess.run(
        [NIGHTLAKE, "convert", COLLECTIONS, "--lake", tmp_path / "lake"]
        + ["--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"],
        capture_output=True,
        text=True,
        env={**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"},
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "tcp://127.0.0.1:9" in lines[0], done.stderr
    assert not (tmp_path / "lake").exists()


def test_a_worker_that_cannot_see_an_input_is_named(dask_client, tmp_path):
    from nightlake.scaleout import ExecutorError

    with pytest.raises(ExecutorError, match=r"cannot see this input directory"):
        DaskExecutor.from_client(dask_client).check_visible(tmp_path, tmp_path / "elsewhere")
