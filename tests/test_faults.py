"""Fault injection: writers SIGKILLed at seeded random points leave the old or the new state.

Each command runs as its console script in a real subprocess and is killed after a delay drawn
from ``random.Random(SEED)``; no assertion depends on where the kill landed. After each kill the
target holds the old or the new state, and the next run on the same target leaves no temps.
Also the sweep itself: a temp whose owner is alive is kept, a dead (or reused) pid's is not.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nightlake.files import sweep_temps, temp_owner, temp_path_for

BIN = Path(sys.executable).parent
SEED = int(os.environ.get("NIGHTLAKE_FAULT_SEED", "20240611"))
KILLS = 3  # per command and run
COLLECTIONS = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "collections"


def temps_under(directory: Path) -> list[Path]:
    return [p for p in directory.rglob(".*") if temp_owner(p) is not None]


def run_and_kill(argv: list, rng: random.Random, watch: Path, trial: int) -> int:
    """Start a console script and SIGKILL it (if still running); its exit status.

    Most trials wait until a temp appears under ``watch`` and kill after a further random
    delay (mid-write); the others kill after a random delay from the start.
    """
    proc = subprocess.Popen(
        [str(BIN / argv[0]), *map(str, argv[1:])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if trial % 3 == 2:
            proc.wait(rng.uniform(0.3, 2.5))
        else:
            while proc.poll() is None and not temps_under(watch):
                time.sleep(0.002)
            proc.wait(rng.uniform(0.0, 0.3))
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    return proc.wait()


def run(argv: list) -> None:
    """Run a command to its end, in this process (the next run after a kill)."""
    from typer.testing import CliRunner

    from nightlake.cli.app import app

    args = [str(a) for a in argv[1:]]
    result = CliRunner().invoke(app, ["detregister", *args] if argv[0] == "detregister" else args)
    assert result.exit_code == 0, result.output


# -- the sweep ------------------------------------------------------------------------------
def test_a_live_owners_temp_is_kept_and_a_dead_owners_removed(tmp_path, dead_pid):
    target = tmp_path / "r.csv"
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        live = target.with_name(f".r.csv.nightlake-tmp-{sleeper.pid}-aa.tmp")
        dead = target.with_name(f".r.csv.nightlake-tmp-{dead_pid}-bb.tmp")
        for temp in (live, dead):
            temp.write_bytes(b"partial")
        assert sweep_temps(target) == [dead]
        assert live.exists() and not dead.exists()
        # the same pid, but its process started after the temp was last written: reused
        os.utime(live, (time.time() - 3600, time.time() - 3600))
        assert sweep_temps(target) == [live]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_file_the_disk_cannot_flush_replaces_nothing(tmp_path, monkeypatch):
    """commit_temp: a file whose fsync fails (EIO) does not replace its target and goes;
    a directory that refuses fsync is passed over (some file systems do)."""
    import errno
    import stat

    from nightlake.files import commit_temp, fsync_path

    target = tmp_path / "t.parquet"
    target.write_bytes(b"old")
    tmp = temp_path_for(target)
    tmp.write_bytes(b"new")
    real_fsync = os.fsync

    def failing(fd):
        kind = "file" if stat.S_ISREG(os.fstat(fd).st_mode) else "directory"
        raise OSError(errno.EIO if kind == "file" else errno.EINVAL, f"no fsync of a {kind}")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError, match="no fsync of a file"):
        commit_temp(tmp, target)
    fsync_path(tmp_path)  # a directory: passed over
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert target.read_bytes() == b"old" and not tmp.exists()


def test_a_zombie_owner_is_gone(tmp_path):
    zombie = subprocess.Popen(["true"])
    while not Path(f"/proc/{zombie.pid}/stat").read_text().split(")")[1].split()[0] == "Z":
        time.sleep(0.01)  # exited, not yet reaped
    try:
        temp = tmp_path / f".x.nightlake-tmp-{zombie.pid}-1.tmp"
        temp.mkdir()
        assert sweep_temps(tmp_path / "x") == [temp] and not temp.exists()
    finally:
        zombie.wait()


def test_temp_names_name_their_target_and_owner(tmp_path):
    first, second = temp_path_for(tmp_path / "a.parquet"), temp_path_for(tmp_path / "a.parquet")
    assert first != second and first.name.endswith(".tmp") and first.name.startswith(".")
    assert temp_owner(first)[0] == "a.parquet" and temp_owner(first)[2] == os.getpid()
    assert temp_owner(tmp_path / "a.parquet") is None
    assert temp_owner(tmp_path / ".a.parquet.abc.tmp") is None  # no pid: not ours


# -- fault injection ------------------------------------------------------------------------
def partitions(lake: Path) -> dict[str, str]:
    """Each partition file of a lake with its rows as text (NaN equals NaN there)."""
    return {
        str(p.relative_to(lake)): repr(pq.read_table(p).to_pydict())
        for p in sorted((lake / "images").rglob("*.parquet"))
    }


@pytest.mark.slow
def test_killed_convert_leaves_each_partition_old_or_new(tmp_path):
    from nightlake import Lake
    from nightlake.ingest.convert import convert

    rng = random.Random(SEED)
    inputs, lake, backup = tmp_path / "in", tmp_path / "lake", tmp_path / "backup"
    shutil.copytree(COLLECTIONS, inputs)
    convert(Lake(lake), [inputs])
    old = partitions(lake)
    shutil.copytree(lake, backup, symlinks=True)
    for name in sorted(os.listdir(inputs))[:3]:  # the new state: fewer rows in three nights
        lines = (inputs / name).read_text().splitlines(keepends=True)
        (inputs / name).write_text("".join(lines[:-2]))
    seen = []
    for trial in range(KILLS):
        shutil.rmtree(lake)
        shutil.copytree(backup, lake, symlinks=True)
        run_and_kill(["nightlake", "convert", inputs, "--lake", lake], rng, lake, trial)
        seen.append(partitions(lake))
        Lake(lake).sql("SELECT count(*) FROM images")  # still reads
        run(["nightlake", "convert", inputs, "--lake", lake])  # the next run
        assert temps_under(tmp_path) == []
    new = partitions(lake)
    assert new != old
    for state in seen:
        for name in set(old) | set(new) | set(state):
            assert state.get(name) in (old.get(name), new.get(name)), name


@pytest.mark.slow
def test_killed_sync_leaves_the_old_or_the_new_mirror(tmp_path):
    from nightlake import Lake
    from nightlake.detrends.detreg import DetRegEntry, init_db, read_db, register
    from nightlake.detrends.mirror import manifest

    rng = random.Random(SEED + 1)
    db, lake = tmp_path / "d.db", tmp_path / "lake"
    lake.mkdir()
    init_db(db)

    def add(n: int, start: int) -> int:
        register(
            db,
            [
                DetRegEntry(
                    filename=f"/m/{i}.fits",
                    type="flat",
                    ccd=i % 62,
                    tstart=i,
                    tstop=i + 1,
                    treg=0,
                    filter="g",
                )
                for i in range(start, start + n)
            ],
        )
        return len(read_db(db))

    before = add(2000, 0)
    run(["nightlake", "sync", "--db", db, "--lake", lake])
    for trial in range(KILLS):
        after = add(2000, 10_000 * (trial + 1))
        run_and_kill(["nightlake", "sync", "--db", db, "--lake", lake], rng, lake, trial)
        assert manifest(Lake(lake))["nrecord"] in (before, after)
        got = sum(pq.read_metadata(p).num_rows for p in (lake / "detrends").glob("type=*/*"))
        assert got == manifest(Lake(lake))["nrecord"]
        run(["nightlake", "sync", "--db", db, "--lake", lake])  # the next run
        assert temps_under(lake) == []
        n = Lake(lake).sql("SELECT count(*) AS n FROM detrends").column("n")[0].as_py()
        assert n == after
        before = after


@pytest.mark.slow
@pytest.mark.parametrize("command", ["export", "export-partitioned", "sql"])
def test_killed_exports_leave_the_old_or_the_complete_new_target(tmp_path, command):
    rng = random.Random(f"{SEED}-{command}")
    lake, out = tmp_path / "lake", tmp_path / "out"
    lake.mkdir()
    out.mkdir()
    target = out / ("parts" if command == "export-partitioned" else "r.csv")

    def argv(rows: int) -> list:
        query = f"SELECT x, x % 7 AS k, 'row ' || x AS s FROM range({rows}) t(x)"
        if command == "sql":
            return ["nightlake", "sql", "--lake", lake, query, "-o", target]
        extra = ["--partition-by", "k"] if command == "export-partitioned" else []
        return ["nightlake", "export", "--lake", lake, query, "--to", target, "--overwrite", *extra]

    def state() -> object:
        if target.is_dir():
            return pq.read_table(target, partitioning="hive").num_rows
        return target.read_bytes() if target.exists() else None

    run(argv(1000))
    old = state()
    run(argv(1_000_000))
    new = state()
    run(argv(1000))
    for trial in range(KILLS):
        run_and_kill(argv(1_000_000), rng, out, trial)
        got = state()
        assert got == old or got == new or (got is None and command == "export-partitioned")
        run(argv(1000))  # the next run on the same target, as the old state again
        assert temps_under(out) == [] and state() == old


def master(path: Path, ccd: int) -> Path:
    import numpy as np
    from astropy.io import fits

    hdu = fits.PrimaryHDU(np.zeros((2, 2), np.float32))
    hdu.header.update(
        {
            "IMAGETYP": "flat",
            "FILTER": "g DECam",
            "CCDNUM": ccd,
            "TV_START": "2014-09-01T00:00:00",
            "TV_STOP": "2014-10-01T00:00:00",
        }
    )
    hdu.writeto(path)
    return path


@pytest.mark.slow
def test_killed_detregister_add_leaves_the_old_or_new_records(tmp_path):
    from nightlake.detrends.detreg import read_db, read_journal

    rng = random.Random(SEED + 2)
    db = tmp_path / "d.db"
    run(["detregister", "init", db])
    masters = [master(tmp_path / f"m{i}.fits", i + 1) for i in range(20)]
    for trial in range(KILLS):
        before = len(read_db(db))
        run_and_kill(["detregister", "add", *masters, "--db", db], rng, tmp_path, trial)
        assert len(read_db(db)) in (before, before + len(masters))
        read_journal(db)  # a torn last line is skipped, never an error
        run(["detregister", "add", masters[0], "--db", db])  # the next run
        run(["detregister", "check", db])  # the hash chain verifies and matches the file
        assert temps_under(tmp_path) == []


ROWS = "SELECT target, night, visit, detector, count(*) n FROM images GROUP BY ALL ORDER BY ALL"


@pytest.mark.slow
def test_killed_compact_reads_the_same_rows_and_the_next_run_finishes_it(tmp_path):
    """A compaction moves rows between files, so no file is "old or new": what must hold is
    that nightlake reads every row once at every moment, and the next run leaves no temps."""
    from nightlake import Lake
    from nightlake.ingest.convert import convert

    rng = random.Random(SEED)
    lake, backup = tmp_path / "lake", tmp_path / "backup"
    convert(Lake(lake), [COLLECTIONS])
    rows = Lake(lake).sql(ROWS)
    shutil.copytree(lake, backup, symlinks=True)
    for trial in range(KILLS):
        shutil.rmtree(lake)
        shutil.copytree(backup, lake, symlinks=True)
        run_and_kill(["nightlake", "compact", "--lake", lake], rng, lake, trial)
        assert Lake(lake).sql(ROWS).equals(rows)  # no row lost, none twice
        run(["nightlake", "compact", "--lake", lake])  # the next run
        assert temps_under(tmp_path) == []
        assert all("year=" in str(p) for p in Lake(lake).image_files())
        assert Lake(lake).sql(ROWS).equals(rows)
