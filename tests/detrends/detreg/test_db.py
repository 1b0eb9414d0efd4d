"""Reading, validating, locking, atomic writes and the journal of a DetReg database."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

from nightlake.detrends.detreg import (
    OPEN_ENDED,
    DetRegEntry,
    Selection,
    add_records,
    delete_records,
    init_db,
    journal_path,
    lock_path,
    make_records,
    read_db,
    read_journal,
    register,
    write_db,
)
from nightlake.errors import FormatError, InputError, LockTimeout, UsageError

from .conftest import dir_state
from .handmade import SAMPLE, card, handmade_file

ROWS = [dict(r, tstop=OPEN_ENDED if r["tstop"] is None else r["tstop"]) for r in SAMPLE]


def _no_end() -> bytes:
    header = b"".join(card(k, v) for k, v in [("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 1)])
    return header + b" " * (2880 - len(header))


def _truncated() -> bytes:
    full = handmade_file("LP64", "little", ROWS)
    return full[: 2880 + 2 * 304 + 100]  # the third record lacks 204 bytes


def _nul_less() -> bytes:
    good = handmade_file("LP64", "little", ROWS)
    record = bytearray(good[2880 : 2880 + 304])
    record[44:298] = b"n" * 254
    return good[:2880] + bytes(record) + good[2880 + 304 :]


BAD_FILES = {
    "not-fits": (b"hello, I am a text file\n" * 200, "not a FITS file"),
    "no-end": (_no_end(), "no END card"),
    "dbtype-missing": (
        handmade_file("LP64", "little", ROWS, drop=("DBTYPE",)),
        "DBTYPE card missing",
    ),
    "dbtype-wrong": (
        handmade_file("LP64", "little", ROWS, cards={"DBTYPE": "IMAGE"}),
        "DBTYPE is 'IMAGE', expected 'DETREG'",
    ),
    "recsize-272": (
        handmade_file("LP64", "little", ROWS, cards={"RECSIZE": 272, "NAXIS1": 3 * 272}),
        "RECSIZE is 272, expected 304 (LP64) or 288 (ILP32)",
    ),
    "recsize-vs-layout": (
        handmade_file("LP64", "little", ROWS, cards={"LAYOUT": "ILP32"}),
        "RECSIZE is 304 but LAYOUT 'ILP32' needs 288",
    ),
    "naxis1": (
        handmade_file("LP64", "little", ROWS, cards={"NAXIS1": 304}),
        "NAXIS1 is 304, expected NRECORD x RECSIZE = 3 x 304 = 912",
    ),
    "truncated": (_truncated(), "(204 bytes missing)"),
    "unknown-type": (
        handmade_file("LP64", "little", [dict(ROWS[0], type=9)]),
        "record 0: unknown type code 9",
    ),
    "type-zero": (
        handmade_file("ILP32", "big", [dict(ROWS[2], type=0)]),
        "record 0: unknown type code 0",
    ),
    "filename-without-nul": (_nul_less(), "record 0: filename has no terminating NUL"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_read_db_rejects(tmp_path, case):
    content, cause = BAD_FILES[case]
    path = tmp_path / f"{case}.db"
    path.write_bytes(content)
    with pytest.raises(FormatError) as info:
        read_db(path)
    assert str(info.value).startswith(f"{path}: ")
    assert cause in str(info.value)


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_cli_refuses_a_bad_database_and_writes_nothing(tmp_path, case, master, detreg_cli):
    content, cause = BAD_FILES[case]
    path = tmp_path / f"{case}.db"
    path.write_bytes(content)
    flat = master()
    before = dir_state(tmp_path)
    for args in (
        ["list", "--db", path],
        ["add", "--db", path, flat],
        ["delete", "--db", path, "--type", "flat"],
    ):
        result = detreg_cli(*args)
        assert result.exit_code != 0, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"error: {path}: " in lines[0] and cause in lines[0], lines
        assert result.stdout == ""
    after = {k: v for k, v in dir_state(tmp_path).items() if k != lock_path(path).name}
    assert after == before  # no rewrite, no journal line, no temp file


def test_truncated_message_counts_missing_bytes(tmp_path):
    path = tmp_path / "t.db"
    path.write_bytes(_truncated())
    with pytest.raises(FormatError, match=r"need 3792 bytes, the file has 3588 \(204 bytes"):
        read_db(path)


def test_a_c_writer_garbage_after_nul_is_not_part_of_the_name(tmp_path):
    good = bytearray(handmade_file("LP64", "little", ROWS))
    start = 2880 + 44 + len(ROWS[0]["filename"]) + 1
    good[start : start + 10] = b"GARBAGE!!!"
    path = tmp_path / "g.db"
    path.write_bytes(bytes(good))
    db = read_db(path)
    assert db.records["filename"][0] == ROWS[0]["filename"]
    assert db.to_arrow()["filename"][0].as_py() == ROWS[0]["filename"].decode()


# ---- writers


def test_init_creates_an_empty_lp64_little_database(tmp_path):
    path = tmp_path / "d.db"
    db = init_db(path)
    assert (len(db), db.layout, db.byteorder, db.filters) == (0, "LP64", "little", {})
    assert read_db(path).fingerprint["size"] == 2880
    with pytest.raises(InputError, match="already exists"):
        init_db(path)
    [entry] = read_journal(path)
    assert entry["action"] == "init" and entry["records"] == []


def _entry(i: int, **kw) -> DetRegEntry:
    values = dict(
        filename=f"/m/flat{i}.fits",
        type="flat",
        ccd=i,
        tstart=1000 + i,
        tstop=2000 + i,
        treg=3000,
        filter="VR",
        sigma=1.0,
        clipsigma=2.0,
    )
    values.update(kw)
    return DetRegEntry(**values)


def test_register_assigns_next_filter_codes_and_journals(tmp_path):
    path = tmp_path / "d.db"
    write_db(path, make_records([]), {4: "g", 1: "r"})
    db = register(
        path,
        [
            _entry(1),
            _entry(2, filter="g"),
            _entry(3, filter="z"),
            _entry(4, type="dark", filter=None, exptime=300),
            _entry(5, type="bias", filter=None),
        ],
    )
    assert db.filters == {1: "r", 4: "g", 5: "VR", 6: "z"}
    assert db.records["filter"].tolist() == [5, 4, 6, 300, -1]
    assert read_db(path).filters == db.filters
    entries = read_journal(path)
    assert [e["action"] for e in entries] == ["add"]
    [entry] = entries
    assert entry["filters_added"] == {"5": "VR", "6": "z"}
    assert entry["nrecord"] == 5 and len(entry["records"]) == 5
    assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert entry["records"][0] == {
        "tstart": 1001,
        "tstop": 2001,
        "treg": 3000,
        "sigma": 1.0,
        "clipsigma": 2.0,
        "type": "flat",
        "filter": 5,
        "filter_name": "VR",
        "ccd": 1,
        "filename": "/m/flat1.fits",
        "flag1": 0,
        "flag2": 0,
    }
    for key in ("time", "user", "host", "db"):
        assert entry[key]
    assert entry["time"].endswith("+00:00")


def test_add_records_merges_filters_and_refuses_conflicts(tmp_path):
    path = tmp_path / "d.db"
    init_db(path)
    add_records(
        path,
        make_records([{"type": "flat", "filter": 2, "tstart": 1, "tstop": 2}]),
        filters={2: "i"},
    )
    with pytest.raises(InputError, match="filter code 2 is 'i' in the database, not 'z'"):
        add_records(path, make_records([]), filters={2: "z"})
    assert len(read_db(path)) == 1 and len(read_journal(path)) == 2


def test_delete_by_selection_and_dry_run(tmp_path):
    path = tmp_path / "d.db"
    write_db(path, make_records([]), {})
    register(path, [_entry(i, ccd=i % 3) for i in range(9)])
    db, removed, idx = delete_records(path, Selection(type="flat", ccd=1), dry_run=True)
    assert len(db) == 9 and idx.tolist() == [1, 4, 7] and len(read_db(path)) == 9
    db, removed, idx = delete_records(path, Selection(type="flat", ccd=1))
    assert len(db) == 6 and idx.tolist() == [1, 4, 7]
    assert set(read_db(path).records["ccd"].tolist()) == {0, 2}
    db, removed, idx = delete_records(path, Selection(filename="/m/flat3.fits"))
    assert idx.tolist() == [2] and len(read_db(path)) == 5
    entries = read_journal(path)
    assert entries[-1]["action"] == "delete" and [r["index"] for r in entries[-2]["records"]] == [
        1,
        4,
        7,
    ]
    with pytest.raises(UsageError, match="refusing to delete every record"):
        delete_records(path, Selection())
    db, removed, idx = delete_records(path, Selection(), allow_all=True)
    assert len(db) == 0 and len(read_db(path)) == 0


def test_delete_by_times_and_filter(tmp_path):
    path = tmp_path / "d.db"
    write_db(path, make_records([]), {})
    register(path, [_entry(1, tstop=OPEN_ENDED), _entry(2, filter="g"), _entry(3)])
    _, _, idx = delete_records(path, Selection(type="flat", tstop=OPEN_ENDED), dry_run=True)
    assert idx.tolist() == [0]
    _, _, idx = delete_records(path, Selection(type="flat", filter="g"), dry_run=True)
    assert idx.tolist() == [1]
    _, _, idx = delete_records(path, Selection(type="flat", tstart=1003), dry_run=True)
    assert idx.tolist() == [2]
    _, _, idx = delete_records(path, Selection(type="flat", filter="nope"), dry_run=True)
    assert idx.tolist() == []


def test_writes_keep_the_file_mode_and_leave_no_temp(tmp_path):
    path = tmp_path / "d.db"
    init_db(path)
    path.chmod(0o640)
    register(path, [_entry(1)])
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.db", "d.db.journal", "d.db.lock"]


def test_a_dead_writers_temp_file_goes_and_a_live_one_of_another_database_stays(tmp_path, dead_pid):
    """The next write sweeps the temp file a killed writer left beside its database, and
    only that: a database whose name begins with this one's keeps its writer's temp file
    (a glob under the lock once removed it, and that writer's replace then failed)."""
    from nightlake.files import temp_path_for

    path, other = tmp_path / "d.db", tmp_path / "d.db.2019"
    init_db(path)
    dead = temp_path_for(path).name.replace(f"-{os.getpid()}-", f"-{dead_pid}-")
    stale = tmp_path / dead
    stale.write_bytes(b"half a database")
    live = temp_path_for(other)  # this process is its writer, and alive
    live.write_bytes(b"another database being written")
    register(path, [_entry(1)])
    assert not stale.exists()
    assert live.read_bytes() == b"another database being written"


def test_a_write_the_disk_cannot_flush_changes_nothing(tmp_path, monkeypatch):
    """fsync failing (EIO: the bytes may never reach the disk) fails the write before it is
    journaled, and the database stays as it was (an ignored error once let it be replaced
    and reported done)."""
    import errno
    import stat

    path = tmp_path / "d.db"
    init_db(path)
    register(path, [_entry(1)])
    before, journal = path.read_bytes(), read_journal(path)
    real_fsync = os.fsync

    def failing(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError, match="Input/output"):
        register(path, [_entry(2)])
    monkeypatch.undo()
    assert path.read_bytes() == before and read_journal(path) == journal
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    register(path, [_entry(3)])  # the next write is as usual
    assert len(read_db(path)) == 2


def test_the_journal_is_append_only(tmp_path):
    path = tmp_path / "d.db"
    init_db(path)
    first = journal_path(path).read_bytes()
    register(path, [_entry(1)])
    delete_records(path, Selection(type="flat"))
    data = journal_path(path).read_bytes()
    assert data.startswith(first) and data.count(b"\n") == 3
    assert [json.loads(line)["action"] for line in data.splitlines()] == ["init", "add", "delete"]


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from filelock import FileLock
    lock = FileLock(sys.argv[1])
    lock.acquire()
    print("locked", flush=True)
    time.sleep(30)
""")


@pytest.fixture
def held_lock(tmp_path):
    """Another process holding ``<db>.lock``; yields the database path."""
    path = tmp_path / "d.db"
    init_db(path)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock_path(path))], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield path
    finally:
        proc.kill()
        proc.wait()


def test_lock_timeout_names_the_lockfile(held_lock, master, detreg_cli):
    path = held_lock
    before = path.read_bytes()
    with pytest.raises(LockTimeout, match=f"database locked by another process: {lock_path(path)}"):
        register(path, [_entry(1)], lock_timeout=0.2)
    result = detreg_cli("add", "--db", path, master(), "--lock-timeout", "0.3")
    assert result.exit_code != 0
    assert result.stderr.strip().endswith(
        f"error: database locked by another process: {lock_path(path)} "
        "(waited 0.3 s; retry, or raise --lock-timeout)"
    )
    assert path.read_bytes() == before and len(read_journal(path)) == 1
    # readers take no lock
    assert len(read_db(path)) == 0
    assert detreg_cli("list", "--db", path).exit_code == 0


def test_writer_rereads_under_the_lock(tmp_path):
    """Two DetRegDB objects read before either write: both adds survive."""
    path = tmp_path / "d.db"
    init_db(path)
    stale_view = read_db(path)
    register(path, [_entry(1)])
    register(path, [_entry(2)])
    assert len(stale_view) == 0 and len(read_db(path)) == 2


def test_readers_never_see_a_torn_file(tmp_path):
    """While a process rewrites a large database in a loop, every read is valid."""
    path = tmp_path / "d.db"
    small = make_records([{"type": "bias", "tstart": 1, "tstop": 2, "filename": "/s"}])
    write_db(path, small, {})
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import numpy as np
        from nightlake.detrends.detreg import make_records, write_db
        big = np.repeat(make_records([{{"type": "flat", "tstart": 1, "tstop": 2,
                                        "filename": "/b"}}]), 20000)
        small = make_records([{{"type": "bias", "tstart": 1, "tstop": 2, "filename": "/s"}}])
        for i in range(20):
            write_db({str(path)!r}, big if i % 2 == 0 else small, {{}})
    """),
        ]
    )
    sizes = set()
    try:
        while writer.poll() is None:
            sizes.add(len(read_db(path)))
    finally:
        writer.wait()
    assert writer.returncode == 0
    assert sizes <= {1, 20000}
