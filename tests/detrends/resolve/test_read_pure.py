"""Reads never write the lake, never wait on its lock, and never fail on images because of the
detrend database; filenames stay exact bytes from the database to the mirror and detsearch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nightlake import Lake
from nightlake.detrends import mirror
from nightlake.detrends.sync import lakes_file, sync
from nightlake.errors import QueryError
from nightlake.lake import LOCK_NAME

from .conftest import T0, VR, record, utc, write_detreg, write_images

REPO = Path(__file__).resolve().parents[3]
PREVIOUS = REPO / "data" / "fixtures" / "previous"
LATIN1 = b"/m/lat\xe9n.fits"  # not UTF-8
ROWS = [
    record("flat", 5, 1, -100, 100, T0 - 200, "flat_vr"),
    record("bias", 5, -1, -100, None, T0 - 150, "bias"),
]
# The read commands, and whether they only need images (exit 0) or read detrends.
IMAGE_ONLY = [
    ("sql", "select count(*) from images"),
    ("info",),
    ("stats",),
    ("init-sql",),
]
NO_LAKE = [("macros",)]
DETRENDS = [("sql", "select count(*) from detrends"), ("resolve", "--type", "flat", "-o", "OUT")]


def nightlake(*args, timeout: float = 120, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nightlake.cli", *map(os.fsdecode, args)],
        capture_output=True,
        timeout=timeout,
        env=env,
    )


@contextmanager
def lake_lock_held(path: Path) -> Iterator[None]:
    """The lake's writer lock, held by another process until the block ends."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nfrom nightlake.lake import LakeDirectory\n"
            f"with LakeDirectory({str(path)!r}).locked(5):\n"
            "    print('locked', flush=True)\n    sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def listing(root: Path) -> dict:
    """Every entry under ``root`` (hidden ones too) with size, mtime_ns and link target."""
    found = {".": (os.lstat(root).st_mtime_ns,)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            link = os.readlink(path) if path.is_symlink() else None
            found[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns, link)
    return found


@pytest.fixture
def stale_lake(tmp_path):
    """A lake whose mirror is stale: its database gained a record whose name is not UTF-8."""
    db = write_detreg(tmp_path / "detrend.db", ROWS)
    shutil.copytree(PREVIOUS / "lake" / "images", tmp_path / "lake" / "images")
    shutil.copy(PREVIOUS / "lake" / "nightlake.json", tmp_path / "lake")
    lake = Lake(tmp_path / "lake")
    sync(lake, db)
    write_detreg(db, ROWS + [dict(ROWS[0], filename=LATIN1)])
    (lake.path / LOCK_NAME).unlink()  # a read must not even create it
    return lake, db


def _args(command, tmp_path, lake):
    args = [str(tmp_path / "out.parquet") if a == "OUT" else a for a in command]
    return args if command in NO_LAKE else [*args, "--lake", str(lake.path)]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("command", IMAGE_ONLY + NO_LAKE + DETRENDS, ids=" ".join)
def test_a_read_writes_nothing_with_a_stale_non_utf8_database(stale_lake, tmp_path, command):
    lake, _ = stale_lake
    before = listing(lake.path)
    done = nightlake(*_args(command, tmp_path, lake))
    stderr = done.stderr.decode("utf-8", "replace")
    if command in DETRENDS:
        assert done.returncode in (1, 2), stderr
        assert len(stderr.strip().splitlines()) == 1, stderr
        assert "detrend mirror is stale; run nightlake sync" in stderr
        assert not (tmp_path / "out.parquet").exists()
    else:
        assert done.returncode == 0, stderr
    assert listing(lake.path) == before
    assert not (lake.path / LOCK_NAME).exists()


@pytest.mark.timeout(300)
def test_reads_do_not_wait_on_the_writer_lock(stale_lake, tmp_path):
    lake, _ = stale_lake
    with lake_lock_held(lake.path):
        before = listing(lake.path)
        for command in IMAGE_ONLY + DETRENDS:
            # Under the 30 s a writer waits for the lock (the old re-sync on read waited it out):
            # a read never asks for the lock.
            done = nightlake(*_args(command, tmp_path, lake), timeout=29)
            assert done.returncode == (0 if command in IMAGE_ONLY else 2), done.stderr
        assert listing(lake.path) == before


def test_lake_sql_never_syncs_its_cached_connection(stale_lake):
    lake, db = stale_lake
    sync(lake, db)  # fresh again, then stale with the cached connection open
    assert lake.sql("SELECT count(*) AS n FROM detrends").to_pylist() == [{"n": 3}]
    write_detreg(db, ROWS)
    (lake.path / LOCK_NAME).unlink()
    before = listing(lake.path)
    assert lake.sql("SELECT count(*) AS n FROM images").to_pylist()[0]["n"] > 0
    with pytest.raises(QueryError, match="detrend mirror is stale; run nightlake sync"):
        lake.sql("SELECT count(*) FROM detrends")
    assert listing(lake.path) == before


def test_sync_keeps_a_non_utf8_name_as_escaped_text_and_exact_bytes(stale_lake, tmp_path):
    _, db = stale_lake
    write_images(
        tmp_path / "small",
        [dict(visit=1, detector=5, filter=VR, band="VR", exposureTime=30.0, obs_time=utc(T0))],
    )
    lake = Lake(tmp_path / "small")
    done = nightlake("sync", "--lake", lake.path, "--db", db)
    assert done.returncode == 0, done.stderr
    rows = lake.sql("SELECT filename, filename_bytes FROM detrends WHERE record_index = 2")
    assert rows.to_pylist() == [{"filename": "/m/lat\\xe9n.fits", "filename_bytes": LATIN1}]
    out = tmp_path / "flats.parquet"
    done = nightlake("resolve", "--type", "flat", "--lake", lake.path, "-o", out)
    assert done.returncode == 0, done.stderr
    table = pq.read_table(out)
    assert table.column("detrend_filename_bytes").to_pylist() == [LATIN1]
    assert table.column("detrend_filename").to_pylist() == ["/m/lat\\xe9n.fits"]
    struct = lake.sql(
        f"SELECT detrend_for('flat', 5, '{VR}', TIMESTAMP '2019-04-02 05:13:00')"
        ".filename_bytes AS b"
    )
    assert struct.to_pylist() == [{"b": LATIN1}]


_names = st.binary(min_size=1, max_size=60).filter(lambda b: b"\0" not in b)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_names, min_size=1, max_size=5))
def test_every_filename_survives_the_mirror(names):
    tmp = Path(tempfile.mkdtemp(prefix="nl-names-"))
    try:
        db = write_detreg(
            tmp / "d.db", [dict(ROWS[1], ccd=i, filename=n) for i, n in enumerate(names)]
        )
        (tmp / "lake").mkdir()
        lake = Lake(tmp / "lake")
        sync(lake, db)
        rows = lake.sql("SELECT filename, filename_bytes FROM detrends ORDER BY record_index")
        assert rows.column("filename_bytes").to_pylist() == names
        assert rows.column("filename").to_pylist() == [
            n.decode("utf-8", "backslashreplace") for n in names
        ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_detsearch_prints_the_exact_bytes(tmp_path):
    db = write_detreg(tmp_path / "d.db", [dict(ROWS[1], filename=LATIN1)])
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from nightlake.cli.detsearch import main; main()",
            "--db",
            str(db),
            "--type",
            "bias",
        ],
        capture_output=True,
        timeout=60,
        # what a UTF-8 desktop locale gives (a C locale escapes already)
        env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip(b"\n").split(b"\t")[-1] == LATIN1


# -- the lake written by the previous release -------------------------------------------------


@pytest.fixture
def previous(tmp_path):
    shutil.copytree(PREVIOUS / "lake", tmp_path / "lake", symlinks=True)
    shutil.copy(PREVIOUS / "detrends.db", tmp_path / "detrends.db")
    return Lake(tmp_path / "lake"), tmp_path / "detrends.db"


def test_an_old_mirror_reads_images_and_says_run_sync_for_detrends(previous):
    lake, db = previous
    before = listing(lake.path)
    done = nightlake("sql", "select count(*) from images", "--lake", lake.path)
    assert done.returncode == 0, done.stderr
    done = nightlake("sql", "select * from detrends", "--lake", lake.path)
    stderr = done.stderr.decode()
    assert done.returncode == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert "detrend mirror is stale; run nightlake sync" in stderr and "format 1" in stderr
    assert listing(lake.path) == before

    done = nightlake("sync", "--db", db, "--lake", lake.path)
    assert done.returncode == 0, done.stderr
    rows = lake.sql("SELECT count(*) AS n, count(filename_bytes) AS b FROM detrends")
    assert rows.to_pylist() == [{"n": 3, "b": 3}]
    settings = json.loads(lake.manifest_path.read_text())
    assert settings["detreg_db"] == str(db.resolve())
    assert (settings["format_version"], settings["partition_by"]) == (1, ["target", "night"])


# -- the tie: detregister add/delete refresh the tied lakes -----------------------------------


def _detregister(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "nightlake.cli", "detregister", *map(os.fsdecode, args)],
        capture_output=True,
        timeout=120,
        env=env,
    )


def test_detregister_add_and_delete_refresh_a_tied_lake(previous, tmp_path):
    lake, db = previous
    assert nightlake("sync", "--db", db, "--lake", lake.path).returncode == 0
    assert json.loads(lakes_file(db).read_text())["lakes"] == [str(lake.path.resolve())]
    master = Path(os.fsdecode(bytes(tmp_path) + b"/lat\xe9n.fits"))
    shutil.copy(PREVIOUS / "m0.fits", master)

    done = _detregister("add", "--db", db, "--ccd", "7", master)
    stderr = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 0, stderr
    assert "lat\\xe9n.fits: the path is not valid UTF-8" in stderr
    assert mirror.staleness(lake) is None  # refreshed
    rows = lake.sql("SELECT filename_bytes FROM detrends WHERE ccd = 7").to_pylist()
    assert rows == [{"filename_bytes": bytes(master)}]

    done = _detregister("delete", "--db", db, "--type", "flat", "--ccd", "7")
    assert done.returncode == 0, done.stderr
    assert mirror.staleness(lake) is None
    assert lake.sql("SELECT count(*) AS n FROM detrends WHERE ccd = 7").to_pylist() == [{"n": 0}]


@pytest.mark.timeout(300)
def test_a_failed_refresh_is_a_warning_and_the_write_stands(previous, tmp_path):
    lake, db = previous
    assert nightlake("sync", "--db", db, "--lake", lake.path).returncode == 0
    with lake_lock_held(lake.path):
        done = _detregister(
            "add", "--db", db, "--ccd", "7", "--lock-timeout", "0.2", PREVIOUS / "m0.fits"
        )
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr
    assert "detregister: warning:" in stderr and "detrend mirror not refreshed" in stderr
    assert len(stderr.strip().splitlines()) == 1
    with pytest.raises(QueryError, match="detrend mirror is stale; run nightlake sync"):
        lake.sql("SELECT * FROM detrends")
    assert lake.sql("SELECT count(*) AS n FROM images").to_pylist()[0]["n"] > 0
