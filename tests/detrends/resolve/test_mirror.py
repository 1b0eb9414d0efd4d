"""The Parquet mirror: layout and metadata, freshness checks, re-sync, and failing views."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nightlake import Lake
from nightlake.detrends import mirror
from nightlake.detrends.detreg import make_records, read_db, write_db
from nightlake.detrends.sync import sync
from nightlake.errors import QueryError

from .conftest import FILTERS, OPEN, T0, VR, record, utc, write_detreg, write_images

ROWS = [
    record(
        "flat", 5, 1, -100, 100, T0 - 200, "flat_vr", sigma=1.5, clipsigma=2.5, flag1=1, flag2=-1
    ),
    record("bias", 5, -1, -100, None, T0 - 150, "bias"),
    record("dark", 6, 300, -100, 100, T0 - 150, "dark300"),
]


@pytest.fixture
def lake_with_db(tmp_path):
    db = write_detreg(tmp_path / "detrend.db", ROWS)
    write_images(
        tmp_path / "lake",
        [dict(visit=1, detector=5, filter=VR, band="VR", exposureTime=300.0, obs_time=utc(T0))],
    )
    lake = Lake(tmp_path / "lake")
    return lake, db


def _query(lake, sql):
    return lake.sql(sql).to_pylist()


def test_sync_writes_hive_partitions_with_the_fingerprint(lake_with_db):
    lake, db = lake_with_db
    result = sync(lake, db)
    assert (result.nrecord, result.counts) == (3, {"bias": 1, "dark": 1, "flat": 1})
    files = sorted(
        p.relative_to(lake.detrends_dir).as_posix() for p in lake.detrends_dir.rglob("*.parquet")
    )
    assert files == [
        "filters.parquet",
        "type=bias/detrends.parquet",
        "type=dark/detrends.parquet",
        "type=flat/detrends.parquet",
    ]
    meta = json.loads(
        pq.read_schema(lake.detrends_dir / "type=flat" / "detrends.parquet").metadata[
            b"nightlake.detreg"
        ]
    )
    fp = read_db(db).fingerprint
    assert meta["db_path"] == str(db.resolve())
    assert (meta["size"], meta["mtime_ns"], meta["sha256"], meta["nrecord"]) == (
        fp["size"],
        fp["mtime_ns"],
        fp["sha256"],
        3,
    )

    rows = _query(lake, "SELECT * FROM detrends ORDER BY record_index")
    assert [r["record_index"] for r in rows] == [0, 1, 2]
    flat, bias, dark = rows
    assert (flat["type"], flat["type_code"], flat["filter"], flat["filter_code"]) == (
        "flat",
        3,
        VR,
        1,
    )
    assert (flat["tstart"], flat["tstop"], flat["treg"]) == (
        utc(T0 - 100),
        utc(T0 + 100),
        utc(T0 - 200),
    )
    assert (flat["tstart_s"], flat["tstop_s"]) == (T0 - 100, T0 + 100)
    assert (flat["sigma"], flat["clipsigma"], flat["flag1"], flat["flag2"]) == (1.5, 2.5, 1, -1)
    assert flat["filename"] == "/m/flat_vr.fits"
    assert flat["filename_bytes"] == b"/m/flat_vr.fits"
    assert (bias["filter"], bias["tstop"], bias["tstop_s"]) == (None, None, OPEN)
    assert (dark["filter"], dark["filter_code"], dark["dark_exptime"]) == (None, 300, 300)
    assert flat["dark_exptime"] is None
    assert _query(lake, "SELECT code, name FROM detrend_filters ORDER BY code") == [
        {"code": c, "name": n} for c, n in sorted(FILTERS.items())
    ]


def test_sync_is_skipped_when_up_to_date_and_old_generations_go(lake_with_db):
    lake, db = lake_with_db
    first = sync(lake, db)
    assert not first.skipped
    assert sync(lake, db).skipped
    for _ in range(3):
        sync(lake, db, force=True)
    generations = [p for p in lake.path.iterdir() if p.name.startswith(".detrends-")]
    assert len(generations) == 2  # the current one and the one before
    assert lake.detrends_dir.resolve() in [g.resolve() for g in generations]


def test_a_changed_database_makes_the_mirror_stale_until_synced(lake_with_db):
    lake, db = lake_with_db
    sync(lake, db)
    before = lake.detrends_dir.resolve()
    time.sleep(0.01)
    new_flat = dict(
        type=3, ccd=5, filter=2, tstart=T0 - 50, tstop=T0 + 50, treg=T0, filename="/m/new_flat.fits"
    )
    write_detreg(db, ROWS + [new_flat])
    assert mirror.staleness(lake) is not None
    with pytest.raises(QueryError, match="detrend mirror is stale; run nightlake sync"):
        lake.sql("SELECT visit, detrend_filename FROM resolve_detrends('flat')")
    assert _query(lake, "SELECT count(*) AS n FROM images") == [{"n": 1}]
    assert lake.detrends_dir.resolve() == before  # a read never re-syncs
    sync(lake)  # the tied database
    rows = _query(lake, "SELECT visit, detrend_filename FROM resolve_detrends('flat')")
    assert rows == [{"visit": 1, "detrend_filename": "/m/new_flat.fits"}]
    assert mirror.staleness(lake) is None


def test_a_database_rewritten_in_the_same_tick_at_the_same_size_is_stale(lake_with_db):
    """Size and mtime alike do not make the file the one synced: a rewrite is a rename, so
    its inode differs (a second write in one coarse mtime tick, on NFS say, kept a stale
    mirror fresh). A mirror synced before inodes were recorded compares the content."""
    lake, db = lake_with_db
    sync(lake, db)
    synced = mirror.manifest(lake)
    new_flat = dict(
        type=3, ccd=5, filter=2, tstart=T0 - 50, tstop=T0 + 50, treg=T0, filename="/m/new_flat.fits"
    )
    write_detreg(db, ROWS + [new_flat])  # a rename; within the file's last 2880-byte block
    assert db.stat().st_size == synced["size"]
    os.utime(db, ns=(synced["mtime_ns"], synced["mtime_ns"]))  # as if in the same tick
    assert "changed since the last sync" in (mirror.staleness(lake) or "")
    assert sync(lake).nrecord == len(ROWS) + 1  # sync does not skip it either
    info = mirror.manifest(lake)
    assert info["inode"] == db.stat().st_ino
    legacy = {k: v for k, v in info.items() if k not in ("inode", "journal_size")}
    (lake.detrends_dir / mirror.MANIFEST).write_text(json.dumps(legacy))
    assert mirror.staleness(lake) is None  # the same content
    assert not sync(lake).skipped  # the next sync records what a stat compares
    assert {"inode", "journal_size"} <= mirror.manifest(lake).keys()
    assert sync(lake).skipped
    (lake.detrends_dir / mirror.MANIFEST).write_text(json.dumps(legacy))
    write_detreg(db, ROWS)
    os.utime(db, ns=(info["mtime_ns"], info["mtime_ns"]))
    assert db.stat().st_size == info["size"]
    assert "changed since the last sync" in (mirror.staleness(lake) or "")


def test_a_journaled_write_is_seen_even_when_the_inode_comes_back(lake_with_db):
    """ext4 gives a rewrite the inode number its predecessor freed: two writes in one mtime
    tick, the second of the first size, look like the file synced. The journal grows with
    every write, so the mirror is stale, and a connection kept open is rebuilt."""
    from nightlake.detrends.detreg import DetRegEntry, register

    lake, db = lake_with_db
    register(db, [])  # a journal from here on
    sync(lake, db)
    synced = mirror.manifest(lake)
    assert synced["journal_size"] == db.with_name(db.name + ".journal").stat().st_size
    kept = Lake(lake.path)
    assert _query(kept, "SELECT count(*) AS n FROM detrends") == [{"n": len(ROWS)}]
    state = kept.disk_state()
    for name in ("a", "b"):
        register(db, [DetRegEntry(f"/m/{name}.fits", "bias", 5, T0, T0 + 100, T0)])
    assert db.stat().st_size == synced["size"]
    os.utime(db, ns=(synced["mtime_ns"], synced["mtime_ns"]))
    info = dict(synced, inode=db.stat().st_ino)  # as if the inode came back
    (lake.detrends_dir / mirror.MANIFEST).write_text(json.dumps(info))
    assert "changed since the last sync" in (mirror.staleness(lake) or "")
    journal = db.with_name(db.name + ".journal")
    with journal.open("ab") as f:  # the journal alone grows: a cached connection is rebuilt
        before = kept.disk_state()
        f.write(b"\n")
    assert kept.disk_state() != before != state


def test_a_touched_but_unchanged_database_is_not_resynced(lake_with_db):
    lake, db = lake_with_db
    sync(lake, db)
    generation = lake.detrends_dir.resolve()
    os.utime(db, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    assert mirror.staleness(lake) is None
    assert _query(lake, "SELECT count(*) AS n FROM detrends") == [{"n": 3}]
    assert lake.detrends_dir.resolve() == generation


def test_without_a_mirror_detrend_queries_fail_and_image_queries_work(lake_with_db):
    lake, _ = lake_with_db
    assert _query(lake, "SELECT count(*) AS n FROM images") == [{"n": 1}]
    with pytest.raises(QueryError, match="no detrend mirror in .*run nightlake sync"):
        lake.sql("SELECT * FROM detrends")


def test_a_missing_database_makes_detrend_queries_fail(lake_with_db):
    lake, db = lake_with_db
    sync(lake, db)
    db.unlink()
    with pytest.raises(QueryError, match=r"detrend database .*detrend\.db .* is missing"):
        lake.sql("SELECT * FROM resolve_detrends('flat')")
    assert _query(lake, "SELECT count(*) AS n FROM images") == [{"n": 1}]


def test_a_bad_database_leaves_the_old_mirror(lake_with_db, cli):
    lake, db = lake_with_db
    sync(lake, db)
    generation = lake.detrends_dir.resolve()
    db.write_bytes(b"SIMPLE  =                    T" + b" " * 2850)
    result = cli("sync", "--lake", lake.path, "--db", db)
    assert result.exit_code != 0
    assert "detrend.db" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert lake.detrends_dir.resolve() == generation
    assert len([p for p in lake.path.iterdir() if p.name.startswith(".detrends-")]) == 1


def test_an_empty_database_gives_empty_views(tmp_path):
    db = tmp_path / "empty.db"
    write_db(db, make_records([]), {})
    write_images(
        tmp_path / "lake",
        [dict(visit=1, detector=5, filter=VR, band="VR", exposureTime=30.0, obs_time=utc(T0))],
    )
    lake = Lake(tmp_path / "lake")
    sync(lake, db)
    assert _query(lake, "SELECT count(*) AS n FROM detrends") == [{"n": 0}]
    assert _query(lake, "SELECT detrend_filename FROM resolve_detrends('bias')") == [
        {"detrend_filename": None}
    ]


def test_a_nan_sigma_is_found_by_isnan(tmp_path):
    # min/max statistics leave NaN out; DuckDB would then skip the row group for isnan()
    rows = [dict(ROWS[1], sigma=float("nan")), dict(ROWS[1], ccd=6, sigma=1.0)]
    db = write_detreg(tmp_path / "nan.db", rows)
    (tmp_path / "lake").mkdir()
    lake = Lake(tmp_path / "lake")
    sync(lake, db)
    assert _query(lake, "SELECT ccd FROM detrends WHERE isnan(sigma)") == [{"ccd": 5}]


def test_sync_and_resolve_commands(lake_with_db, cli, tmp_path):
    lake, db = lake_with_db
    result = cli("sync", "--lake", lake.path, "--db", db)
    assert result.exit_code == 0, result.output
    assert "synced 3 records" in result.stdout and "1 flat" in result.stdout
    result = cli("sync", "--lake", lake.path)  # the database already mirrored
    assert result.exit_code == 0 and "up to date" in result.stdout

    out = tmp_path / "flats.parquet"
    result = cli("resolve", "--type", "flat", "--lake", lake.path, "-o", out)
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.column("detrend_filename").to_pylist() == ["/m/flat_vr.fits"]
    meta = json.loads(table.schema.metadata[b"nightlake.resolve"])
    assert (meta["type"], meta["mode"], meta["db"]["sha256"]) == (
        "flat",
        "exact",
        read_db(db).fingerprint["sha256"],
    )
    assert "nightlake_version" in meta

    result = cli("resolve", "--type", "flats", "--lake", lake.path, "-o", tmp_path / "x.parquet")
    assert result.exit_code == 2 and "--type 'flats'" in result.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_sync_without_a_database_says_how_to_give_one(tmp_path, cli, monkeypatch):
    monkeypatch.delenv("NIGHTLAKE_DETREG", raising=False)
    result = cli("sync", "--lake", tmp_path / "lake")
    assert result.exit_code == 1
    assert "pass --db DB or set NIGHTLAKE_DETREG" in result.stderr


def _immutable(path: Path, on: bool) -> bool:
    flag = "+i" if on else "-i"
    done = subprocess.run(["chattr", flag, str(path)], capture_output=True)
    return done.returncode == 0


@pytest.mark.parametrize("keep_lock_file", [True, False])
def test_a_stale_mirror_in_a_read_only_lake_fails_detrend_queries(lake_with_db, keep_lock_file):
    lake, db = lake_with_db
    sync(lake, db)
    if not keep_lock_file:
        (lake.path / ".nightlake.lock").unlink()
    time.sleep(0.01)
    write_detreg(db, ROWS[:1])
    if os.geteuid() == 0:  # root ignores file modes; the immutable flag stops it too
        if not _immutable(lake.path, True):
            pytest.skip("chattr +i not available here")
    else:
        os.chmod(lake.path, 0o555)
    try:
        assert _query(lake, "SELECT count(*) AS n FROM images") == [{"n": 1}]
        with pytest.raises(QueryError, match="detrend mirror is stale; run nightlake sync"):
            lake.sql("SELECT * FROM resolve_detrends('flat')")
        with pytest.raises(QueryError, match="detrend mirror is stale"):
            lake.sql("SELECT count(*) FROM detrends")
    finally:
        if os.geteuid() == 0:
            _immutable(lake.path, False)
        else:
            os.chmod(lake.path, 0o755)
    assert mirror.staleness(lake) is not None  # nothing was rewritten
    sync(lake, db)  # writable again
    assert _query(lake, "SELECT count(*) AS n FROM detrends") == [{"n": 1}]


def test_a_database_that_no_longer_validates_fails_only_detrend_queries(lake_with_db):
    lake, db = lake_with_db
    sync(lake, db)
    db.write_bytes(b"SIMPLE  =                    T" + b" " * 2850)
    assert _query(lake, "SELECT count(*) AS n FROM images") == [{"n": 1}]
    with pytest.raises(QueryError, match=r"detrend mirror is stale; .*detrend\.db changed"):
        lake.sql("SELECT * FROM detrends")


def test_view_sql_for_other_clients_survives_later_syncs(lake_with_db):
    import duckdb

    lake, db = lake_with_db
    sync(lake, db)
    views = lake.view_sql()
    for _ in range(3):
        sync(lake, db, force=True)  # the first generation is gone by now
    con = duckdb.connect()
    con.execute(views)
    assert con.sql("SELECT count(*) FROM detrends").fetchall() == [(3,)]
    assert con.sql("SELECT count(*) FROM detrend_filters").fetchall() == [(len(FILTERS),)]


def test_one_lake_object_follows_the_database_between_queries(lake_with_db):
    # Lake.sql keeps its connection between calls; a changed database must still be seen.
    lake, db = lake_with_db
    sync(lake, db)
    assert _query(lake, "SELECT count(*) AS n FROM detrends") == [{"n": len(ROWS)}]
    time.sleep(0.01)
    write_detreg(db, ROWS[:1])
    with pytest.raises(QueryError, match="detrend mirror is stale"):
        lake.sql("SELECT count(*) AS n FROM detrends")
    sync(lake, db)
    assert _query(lake, "SELECT count(*) AS n FROM detrends") == [{"n": 1}]


@pytest.mark.parametrize(
    "damaged, says",
    [
        # bound when the view is made: the views fail with the reason and the remedy
        ("filters.parquet", r"the detrend mirror .* is damaged .*nightlake sync --force"),
        # read when the query runs: DuckDB names the file
        ("type=flat", r"type=flat/detrends\.parquet' too small to be a Parquet file"),
    ],
)
def test_a_damaged_mirror_file_fails_only_detrend_queries(lake_with_db, cli, damaged, says):
    """A mirror file that is no Parquet any more (a disk error, a hand edit): images are
    still queried, and a query of the detrends says what is wrong."""
    lake, db = lake_with_db
    sync(lake, db)
    target = lake.detrends_dir / damaged
    if target.is_dir():
        target = next(target.glob("*.parquet"))
    target.write_bytes(b"not parquet")
    assert _query(lake, "SELECT count(*) AS n FROM images") == [{"n": 1}]
    with pytest.raises(QueryError, match=says):
        _query(lake, "SELECT count(*) FROM detrends JOIN detrend_filters ON true")
    done = cli("sql", "--lake", lake.path, "SELECT count(*) AS n FROM images")
    assert done.exit_code == 0, done.stderr
    assert cli("sync", "--db", db, "--lake", lake.path, "--force").exit_code == 0
    assert _query(lake, "SELECT count(*) AS n FROM detrends") == [{"n": 3}]
