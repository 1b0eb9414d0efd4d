"""Nothing is silently dropped, the journal cannot tear, `detregister check`: real files, the
compiled C client and real subprocesses."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nightlake.detrends.detreg import make_records, read_db, read_journal, write_db
from nightlake.detrends.detreg.check import check_db
from nightlake.errors import FormatError

from .conftest import BIN

PREVIOUS = Path(__file__).resolve().parents[3] / "data" / "fixtures" / "previous"


def _run(prog: str, *args, cwd=None):
    return subprocess.run(
        [str(BIN / prog), *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def _one_error_line(result, prog: str) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    return lines[0]


@pytest.fixture
def db(tmp_path, detreg_cli, master):
    path = tmp_path / "detrend.db"
    assert detreg_cli("init", path).exit_code == 0
    assert detreg_cli("add", "--db", path, master("a.fits")).exit_code == 0
    return path


# --------------------------------------------------------------------------------------------
# Data after the declared records


def test_records_beyond_nrecord_are_refused_then_kept_on_request(
    tmp_path, c_tool, detreg_cli, master
):
    short = tmp_path / "short.db"
    subprocess.run([str(c_tool), "write-short", str(short), "10", "5"], check=True)
    before = short.read_bytes()
    for args in (
        ["list", "--db", short],
        ["add", "--db", short, master()],
        ["delete", "--db", short, "--type", "bias"],
    ):
        result = detreg_cli(*args)
        assert result.exit_code == 1, result.output
        [line] = result.stderr.splitlines()
        assert f"{short}: data after the 5 records NRECORD declares" in line
        assert "5 more whole record(s)" in line
    assert short.read_bytes() == before  # nothing rewritten, nothing dropped
    checked = detreg_cli("check", short)
    assert checked.exit_code == 1 and "data after the 5 records" in checked.stdout
    assert detreg_cli("check", short, "--keep-extra").exit_code == 2  # needs --repair
    repaired = detreg_cli("check", short, "--repair", "--keep-extra")
    assert repaired.exit_code == 0, repaired.output
    assert "kept 5 record(s)" in repaired.stdout
    dump = subprocess.run(
        [str(c_tool), "dump", str(short)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(dump) == 10 and len(read_db(short)) == 10
    [entry] = read_journal(short)
    assert entry["action"] == "repair" and [r["index"] for r in entry["records"]] == list(
        range(5, 10)
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(0, 3), pad=st.integers(0, 6000), where=st.floats(0, 1), value=st.integers(1, 255)
)
def test_any_nonzero_byte_after_the_records_is_refused(tmp_path, n, pad, where, value):
    path = tmp_path / "x.db"
    records = make_records(
        [
            {"type": "bias", "tstart": i, "tstop": i + 1, "filename": f"/m/{i}.fits"}
            for i in range(n)
        ]
    )
    write_db(path, records, {})
    content = bytearray(path.read_bytes())
    end = len(content) - (-(n * 304) % 2880)  # where the records end
    content = content[:end] + b"\0" * pad
    path.write_bytes(bytes(content))
    assert len(read_db(path)) == n  # zero padding of any length is fine
    if pad:
        content[end + min(int(where * pad), pad - 1)] = value
        path.write_bytes(bytes(content))
        with pytest.raises(FormatError, match=f"{path}: data after the {n} records"):
            read_db(path)


# --------------------------------------------------------------------------------------------
# The journal: chain, torn tail, an entry that never took effect


def _chain_ok(path: Path) -> None:
    lines = Path(f"{path}.journal").read_bytes().splitlines(keepends=True)
    prev = hashlib.sha256(b"").hexdigest()
    for line in lines:
        entry = json.loads(line)
        if "journal_version" in entry:
            assert entry["prev"] == prev and entry["journal_version"] == 2
        prev = hashlib.sha256(line).hexdigest()


def test_entries_are_chained_and_replayable(db, detreg_cli, master):
    assert detreg_cli("add", "--db", db, master("b.fits", CCDNUM=7)).exit_code == 0
    assert detreg_cli("delete", "--db", db, "--type", "flat", "--ccd", "7").exit_code == 0
    _chain_ok(db)
    entries = read_journal(db)
    assert [e["action"] for e in entries] == ["init", "add", "add", "delete"]
    [gone] = entries[-1]["records"]
    assert gone["index"] == 1 and gone["ccd"] == 7 and gone["filename"].endswith("b.fits")
    assert all(e["time"].endswith("+00:00") and len(e["time"]) == 32 for e in entries)
    result = detreg_cli("check", db)
    assert result.exit_code == 0 and result.stdout.startswith(f"{db}: ok: 1 records")


def test_torn_tail_is_skipped_reported_and_cut_by_the_next_add(db, detreg_cli, master):
    journal = Path(f"{db}.journal")
    journal.write_bytes(journal.read_bytes() + b'{"journal_version":2,"prev":"ab')
    assert [e["action"] for e in read_journal(db)] == ["init", "add"]
    checked = detreg_cli("check", db)
    assert checked.exit_code == 1 and "ends in a partial line of 31 bytes" in checked.stdout
    assert detreg_cli("add", "--db", db, master("b.fits")).exit_code == 0
    _chain_ok(db)
    assert [e["action"] for e in read_journal(db)] == ["init", "add", "add"]
    assert detreg_cli("check", db).exit_code == 0


def test_check_repair_cuts_a_torn_tail(db, detreg_cli):
    journal = Path(f"{db}.journal")
    journal.write_bytes(journal.read_bytes() + b'{"time"')
    result = detreg_cli("check", db, "--repair")
    assert result.exit_code == 0, result.output
    assert "cut a partial last line of 7 bytes" in result.stdout
    assert journal.read_bytes().endswith(b"\n")


def test_an_entry_that_never_took_effect_is_explained_then_marked_abandoned(db, detreg_cli, master):
    old = db.read_bytes()
    assert detreg_cli("add", "--db", db, master("b.fits")).exit_code == 0
    db.write_bytes(old)  # the state of a writer killed between journal fsync and replace
    checked = detreg_cli("check", db)
    assert checked.exit_code == 1
    [line] = checked.stdout.splitlines()
    assert "the last entry (add at " in line and "never took effect" in line
    assert detreg_cli("add", "--db", db, master("c.fits")).exit_code == 0
    entries = read_journal(db)
    assert [e["action"] for e in entries] == ["init", "add", "add", "abandoned", "add"]
    assert entries[3]["sha256"] == hashlib.sha256(old).hexdigest()
    assert detreg_cli("check", db).exit_code == 0
    _chain_ok(db)


#: a real add, stopped between its journal append and the replace of the file until a line
#: comes on stdin (the pause wraps the writer's own replace; nothing else is changed)
PAUSED_ADD = textwrap.dedent("""
    import sys
    from nightlake.detrends.detreg import db
    replace = db._atomic_replace
    def paused(path, content, before_replace=None):
        def journal_then_wait():
            before_replace()
            print("journaled", flush=True)
            sys.stdin.readline()
        return replace(path, content, journal_then_wait)
    db._atomic_replace = paused
    db.add_records(sys.argv[1], db.make_records(
        [{"type": "bias", "tstart": 7, "tstop": 8, "filename": "/m/paused.fits"}]))
""")


def test_check_during_a_write_waits_for_it_instead_of_reporting_it(db, detreg_cli):
    """Between a writer's journal append and its replace, the files look like a writer that
    died there: check reads again under the writer lock, and says a write is in progress
    when the lock cannot be had in time."""
    writer = subprocess.Popen(
        [sys.executable, "-c", PAUSED_ADD, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "journaled"
        report = check_db(db, lock_timeout=0)
        assert not report.ok
        assert report.problems[0].startswith("database locked by another process: ")
        assert "a write may be in progress; check again after it" in report.problems[0]
        assert "never took effect" in report.problems[1]
        checked = detreg_cli("check", db, "--lock-timeout", "0")
        assert checked.exit_code == 1 and "a write may be in progress" in checked.stdout
        assert "(waited 0 s;" in checked.stdout  # the option reaches the check
        writer.stdin.write("go\n")
        writer.stdin.flush()
        # the check waits for the writer's lock, then reads the finished write
        report = check_db(db, lock_timeout=120)
    finally:
        writer.stdin.close()
        writer.wait(timeout=120)
    assert writer.returncode == 0
    assert report.ok, report.problems
    assert [e["action"] for e in read_journal(db)] == ["init", "add", "add"]
    assert len(read_db(db)) == 2


def test_a_problem_found_where_no_lock_can_be_taken_says_so(db):
    """A database whose lock cannot be made (here its name is taken by a directory; a
    read-only copy is the usual case) is judged as read, and the report says it was read
    without the lock."""
    old = db.read_bytes()
    write_db(db, make_records([{"type": "mask", "tstart": 5, "filename": "/m/x.fits"}]), {})
    Path(f"{db}.lock").unlink(missing_ok=True)
    Path(f"{db}.lock").mkdir()
    report = check_db(db, lock_timeout=0)
    assert report.problems[0].startswith(f"{db}.lock: cannot take the writer lock (")
    assert "matches no journaled state" in report.problems[1]
    db.write_bytes(old)
    assert check_db(db, lock_timeout=0).ok  # a clean database needs no lock


def test_check_makes_no_lock_file_where_no_writer_ever_locked(db, detreg_cli):
    """No ``<db>.lock``: no writer of ours is at work, so the first reading stands and
    check leaves no lock file (one made by a reader's umask could shut out a group's
    writers). A negative --lock-timeout (filelock: wait forever) is refused."""
    lock = Path(f"{db}.lock")
    lock.unlink()
    write_db(db, make_records([{"type": "mask", "tstart": 5, "filename": "/m/x.fits"}]), {})
    report = check_db(db, lock_timeout=0)
    assert len(report.problems) == 1 and "matches no journaled state" in report.problems[0]
    assert not lock.exists()
    refused = detreg_cli("check", db, "--lock-timeout", "-1")
    assert refused.exit_code == 2
    (line,) = refused.stderr.strip().splitlines()
    assert line.endswith("error: --lock-timeout must be 0 or more seconds, not -1")
    assert not lock.exists()
    before = db.read_bytes()
    for writer in (["delete", "--db", db, "--type", "mask"], ["init", db.with_name("new.db")]):
        refused = detreg_cli(*writer, "--lock-timeout", "-1")
        assert refused.exit_code == 2, refused.output
        (line,) = refused.stderr.strip().splitlines()
        assert line.endswith("error: --lock-timeout must be 0 or more seconds, not -1")
    assert db.read_bytes() == before and not db.with_name("new.db").exists()


def test_a_change_without_journal_is_reported_and_recorded_as_external(db, detreg_cli):
    # a tool that keeps no journal writes a state no entry describes
    write_db(db, make_records([{"type": "mask", "tstart": 5, "filename": "/m/mask.fits"}]), {})
    checked = detreg_cli("check", db)
    assert checked.exit_code == 1 and "matches no journaled state" in checked.stdout
    repaired = detreg_cli("check", db, "--repair")
    assert repaired.exit_code == 0 and "appended an 'external' entry" in repaired.stdout
    assert read_journal(db)[-1]["action"] == "external"


def test_a_changed_line_breaks_the_chain(db, detreg_cli):
    journal = Path(f"{db}.journal")
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[0] = lines[0].replace(b'"action":"init"', b'"action":"init" ')
    journal.write_bytes(b"".join(lines))
    checked = detreg_cli("check", db)
    assert checked.exit_code == 1 and f"{journal}:2: hash chain broken" in checked.stdout


def test_previous_journal_reads_appends_and_checks(tmp_path, detreg_cli, master):
    for name in ("detrends.db", "detrends.db.journal"):
        shutil.copy(PREVIOUS / name, tmp_path / name)
    db = tmp_path / "detrends.db"
    legacy = Path(f"{db}.journal").read_bytes().splitlines(keepends=True)
    result = detreg_cli("check", db)
    assert result.exit_code == 0, result.output
    assert "5 legacy entries, unchained" in result.stdout
    assert detreg_cli("add", "--db", db, master()).exit_code == 0
    entries = read_journal(db)
    assert len(entries) == 6 and entries[-1]["prev"] == hashlib.sha256(legacy[-1]).hexdigest()
    assert detreg_cli("check", db).exit_code == 0


# --------------------------------------------------------------------------------------------
# Symlinks, missing databases


def test_symlinked_database_is_written_through_the_link(tmp_path, detreg_cli, master):
    real = tmp_path / "real"
    real.mkdir()
    assert detreg_cli("init", real / "detrend.db").exit_code == 0
    link = tmp_path / "current.db"
    link.symlink_to(real / "detrend.db")
    flat = master()
    assert detreg_cli("add", "--db", link, flat).exit_code == 0
    assert detreg_cli("delete", "--db", link, "--all").exit_code == 0
    assert detreg_cli("add", "--db", link, flat).exit_code == 0
    assert link.is_symlink() and len(read_db(real / "detrend.db")) == 1
    assert [e["action"] for e in read_journal(real / "detrend.db")] == [
        "init",
        "add",
        "delete",
        "add",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current.db", "flat.fits", "real"]


@pytest.mark.parametrize(
    "args",
    [
        ["add", "--db", "{db}", "{master}"],
        ["delete", "--db", "{db}", "--all"],
        ["check", "{db}"],
        ["check", "{db}", "--repair"],
        ["list", "--db", "{db}"],
    ],
)
def test_missing_database_leaves_no_lock(tmp_path, detreg_cli, master, args):
    missing = tmp_path / "nope.db"
    flat = master()
    result = detreg_cli(*[a.format(db=missing, master=flat) for a in args])
    assert result.exit_code == 1 and str(missing) in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.fits"]


# --------------------------------------------------------------------------------------------
# One error line


def test_truncated_master_is_one_error_line(tmp_path, master):
    full = master().read_bytes()
    db = tmp_path / "d.db"
    assert _run("detregister", "init", db).returncode == 0
    for cut in (5000, 2000):
        truncated = tmp_path / f"t{cut}.fits"
        truncated.write_bytes(full[:cut] if cut < len(full) else full[:-100])
        result = _run("detregister", "add", "--db", db, truncated)
        assert result.returncode == 1
        assert str(truncated) in _one_error_line(result, "detregister")
    assert len(read_db(db)) == 0


@pytest.mark.parametrize(
    "prog,args",
    [
        ("detregister", ["add", "--db", "x.db", "--ccd", "five", "m.fits"]),
        ("detregister", ["-db", "x.db", "-ccd", "5.5", "m.fits"]),
        ("detregister", ["list", "--frobnicate"]),
        ("detregister", ["init"]),
        ("detregister", ["check", "x.db", "--lock-timeout", "soon"]),
        ("detregister", ["delete", "--db"]),
        ("nightlake", ["detregister", "add", "--ccd", "five", "m.fits"]),
        ("nightlake", ["sql", "--lake"]),
        ("nightlake", ["no-such-command"]),
        ("nightlake", ["--no-such-option"]),
        ("nightlake", ["resolve", "--type", "flat"]),
        ("nightlake", ["detsearch", "--ccd", "five"]),
        ("detsearch", ["--ccd", "five"]),
        ("detsearch", ["--time"]),
        ("detsearch", ["--no-such-option"]),
    ],
)
def test_bad_option_values_are_one_line_exit_2(tmp_path, prog, args):
    result = _run(prog, *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    _one_error_line(result, prog)
    assert not result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "prog,args",
    [
        ("detregister", ["--help"]),
        ("detregister", ["-h"]),
        ("detregister", ["check", "--help"]),
        ("nightlake", ["--help"]),
        ("nightlake", ["sql", "--help"]),
        ("detsearch", ["--help"]),
        ("nightlake", ["--version"]),
    ],
)
def test_help_still_works(prog, args):
    result = _run(prog, *args)
    assert result.returncode == 0 and result.stdout and not result.stderr


def test_bare_nightlake_still_shows_help():
    result = _run("nightlake")
    assert "Usage: nightlake" in result.stderr and "detregister" in result.stderr


def test_check_reads_without_writing(db, detreg_cli):
    state = {p.name: p.read_bytes() for p in db.parent.iterdir() if p.is_file()}
    assert detreg_cli("check", db).exit_code == 0
    assert {p.name: p.read_bytes() for p in db.parent.iterdir() if p.is_file()} == state
