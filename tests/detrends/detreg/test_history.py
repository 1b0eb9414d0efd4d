"""The database as of any time (journal replay), ``nightlake history``, ``detregister adopt``."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nightlake.cli.app import app
from nightlake.cli.detsearch import run
from nightlake.detrends.detreg import (
    DetRegEntry,
    Selection,
    delete_records,
    init_db,
    read_db,
    read_journal,
    register,
    write_db,
)
from nightlake.detrends.detreg.db import record_dict
from nightlake.detrends.detreg.journal import journal_path
from nightlake.detrends.history import history, parse_as_of, replay
from nightlake.errors import FormatError, InputError, UsageError

PREVIOUS = Path(__file__).resolve().parents[3] / "data" / "fixtures" / "previous"
BIN = Path(sys.executable).parent
DAY = 86400
T0 = 1554076800  # 2019-04-01


def entry(ccd: int, filt: str, start: int, days: int, name: str) -> DetRegEntry:
    return DetRegEntry(
        filename=f"/m/{name}.fits",
        type="flat",
        filter=filt,
        ccd=ccd,
        tstart=T0 + start * DAY,
        tstop=T0 + (start + days) * DAY,
        treg=T0 + start * DAY,
    )


def same(a, b) -> bool:
    """Record for record (NaN sigmas compare equal as None), and the filter table."""
    rows = [[record_dict(r, db.filters) for r in db.records] for db in (a, b)]
    return a.filters == b.filters and rows[0] == rows[1]


def last_time(db: Path):
    return parse_as_of(read_journal(db)[-1]["time"])


ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"),
            st.lists(
                st.tuples(
                    st.integers(1, 2), st.sampled_from("gr"), st.integers(0, 5), st.integers(1, 4)
                ),
                min_size=1,
                max_size=3,
            ),
        ),
        st.tuples(st.just("delete"), st.integers(1, 2)),
    ),
    min_size=1,
    max_size=5,
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=ops)
def test_as_of_every_recorded_time_equals_the_saved_copy(tmp_path_factory, ops):
    tmp = tmp_path_factory.mktemp("asof")
    db = tmp / "d.db"
    init_db(db)
    saved = [(last_time(db), tmp / "copy0.db")]
    shutil.copy(db, saved[0][1])
    for n, (op, arg) in enumerate(ops, 1):
        if op == "add":
            register(db, [entry(c, f, s, d, f"m{n}_{i}") for i, (c, f, s, d) in enumerate(arg)])
        else:
            delete_records(db, Selection(type="flat", ccd=arg))
        if last_time(db) != saved[-1][0]:  # a delete that matched nothing writes nothing
            saved.append((last_time(db), tmp / f"copy{n}.db"))
            shutil.copy(db, saved[-1][1])
    for k, (when, copy) in enumerate(saved):
        later = saved[k + 1][0] if k + 1 < len(saved) else when + timedelta(days=1)
        for moment in (when, when + (later - when) / 2):
            state = replay(db, moment)
            assert same(state.db, read_db(copy))
            assert state.sha256 == read_db(copy).fingerprint["sha256"]
            for ccd in (1, 2):
                query = ["--type", "flat", "--ccd", str(ccd), "--filter", "g", "--time"]
                query.append(str(T0 + 2 * DAY))
                now, then = io.StringIO(), io.StringIO()
                run([*query, "--db", str(copy)], out=now)
                run([*query, "--db", str(db), "--as-of", moment.isoformat()], out=then)
                assert now.getvalue() == then.getvalue()


def test_the_previous_release_journal_replays(tmp_path):
    for f in ("detrends.db", "detrends.db.journal"):
        shutil.copy(PREVIOUS / f, tmp_path / f)
    db = tmp_path / "detrends.db"
    state = replay(db)
    assert same(state.db, read_db(db)) and state.position.entries == 5
    times = [c.time for c in history(db)]
    assert len(replay(db, parse_as_of(times[3])).db) == 4  # before the delete


@pytest.mark.parametrize("text", ["yesterday", "2019-13-01", "nan", "1e30", ""])
def test_a_bad_as_of_is_a_usage_error(text):
    with pytest.raises(UsageError, match="--as-of"):
        parse_as_of(text)


@pytest.mark.parametrize(
    "text,iso",
    [
        ("1554076800", "2019-04-01T00:00:00+00:00"),
        ("2019-04-01T00:00:00", "2019-04-01T00:00:00+00:00"),
        ("2019-04-01T02:00:00+02:00", "2019-04-01T00:00:00+00:00"),
        ("2019-04-01T00:00:00Z", "2019-04-01T00:00:00+00:00"),
    ],
)
def test_as_of_spellings(text, iso):
    assert parse_as_of(text).isoformat() == iso


def test_before_the_first_entry_names_the_earliest_time(tmp_path):
    db = tmp_path / "d.db"
    init_db(db)
    first = read_journal(db)[0]["time"]
    with pytest.raises(InputError, match=f"earliest reproducible time is {first[:19]}"):
        replay(db, parse_as_of("2000-01-01"))


def test_a_foreign_database_needs_adopting(tmp_path):
    db = tmp_path / "d.db"
    write_db(db, np.zeros(0, read_db(PREVIOUS / "detrends.db").records.dtype), {})
    register(db, [entry(1, "g", 0, 2, "a")])  # journal starts with an add: no init
    with pytest.raises(InputError, match="no init or adopt entry.*detregister adopt"):
        replay(db)
    result = CliRunner().invoke(app, ["detregister", "adopt", str(db)])
    assert result.exit_code == 0, result.output
    assert same(replay(db).db, read_db(db))
    register(db, [entry(2, "r", 0, 2, "b")])
    assert len(replay(db).db) == 2


def test_after_an_external_change_replay_stops_until_adopted(tmp_path):
    db = tmp_path / "d.db"
    init_db(db)
    register(db, [entry(1, "g", 0, 2, "a")])
    foreign = read_db(db)
    write_db(db, foreign.records[:0], foreign.filters)  # a tool without a journal
    register(db, [entry(2, "r", 0, 2, "b")])  # settles: an `external` marker, then the add
    with pytest.raises(InputError, match="keeps no journal"):
        replay(db)
    before = parse_as_of(read_journal(db)[1]["time"])
    assert len(replay(db, before).db) == 1  # what came before the foreign change still replays


def _edit_last_record(db: Path) -> None:
    """Change the last entry's record by hand; the chain of that last line stays whole."""
    lines = journal_path(db).read_text().splitlines(keepends=True)
    edited = json.loads(lines[-1])
    edited["records"][0]["ccd"] = 7
    lines[-1] = json.dumps(edited, separators=(",", ":")) + "\n"
    journal_path(db).write_text("".join(lines))


def test_a_hand_edited_journal_record_is_caught(tmp_path):
    db = tmp_path / "d.db"
    init_db(db)
    register(db, [entry(1, "g", 0, 2, "a")])
    _edit_last_record(db)
    with pytest.raises(FormatError, match="does not reproduce"):
        replay(db)


def test_a_broken_chain_is_refused(tmp_path):
    db = tmp_path / "d.db"
    init_db(db)
    register(db, [entry(1, "g", 0, 2, "a")])
    register(db, [entry(1, "r", 0, 2, "b")])
    lines = journal_path(db).read_text().splitlines(keepends=True)
    journal_path(db).write_text(lines[0] + lines[2])
    with pytest.raises(FormatError, match="hash chain broken"):
        replay(db)


def test_cli_history_and_as_of_errors_are_one_line(tmp_path):
    db = tmp_path / "d.db"
    init_db(db)
    register(db, [entry(1, "g", 0, 2, "a")])
    out = subprocess.run(
        [BIN / "nightlake", "history", "--db", db, "--format", "json"], capture_output=True
    )
    assert out.returncode == 0
    changes = json.loads(out.stdout)
    assert [c["action"] for c in changes] == ["init", "add"]
    assert changes[1]["records"][0]["filename"] == "/m/a.fits"
    assert changes[1]["sha256"] == read_db(db).fingerprint["sha256"]
    for argv, code in [
        ([BIN / "nightlake", "detregister", "list", "--db", db, "--as-of", "2000-01-01"], 1),
        ([BIN / "nightlake", "detregister", "list", "--db", db, "--as-of", "soon"], 2),
        ([BIN / "detsearch", "--db", db, "--type", "flat", "--as-of", "2000-01-01"], 1),
    ]:
        out = subprocess.run(argv, capture_output=True, text=True)
        assert out.returncode == code, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    then = subprocess.run(
        [BIN / "nightlake", "detregister", "list", "--db", db, "--format", "json"]
        + ["--as-of", changes[0]["time"]],
        capture_output=True,
        text=True,
    )
    assert then.returncode == 0 and json.loads(then.stdout) == []


def test_history_marks_an_entry_the_file_has_not_seen(tmp_path):
    """A writer stopped between its journal append and its replace: history lists its entry
    as pending (table and JSON) until the next write marks it abandoned."""
    db = tmp_path / "d.db"
    init_db(db)
    register(db, [entry(1, "g", 0, 2, "a")])
    before = db.read_bytes()
    register(db, [entry(1, "r", 0, 2, "b")])
    db.write_bytes(before)  # the file as the stopped writer left it
    assert [c.pending for c in history(db)] == [False, False, True]
    table = subprocess.run(
        [BIN / "nightlake", "history", "--db", db], capture_output=True, text=True
    )
    assert table.returncode == 0, table.stderr
    marked = [line for line in table.stdout.splitlines() if "(not in the file:" in line]
    assert len(marked) == 1 and " add " in marked[0] and "/m/b.fits" not in marked[0]
    as_json = subprocess.run(
        [BIN / "nightlake", "history", "--db", db, "--format", "json"], capture_output=True
    )
    assert [c["pending"] for c in json.loads(as_json.stdout)] == [False, False, True]
    register(db, [entry(1, "i", 0, 2, "c")])  # marks it abandoned first
    changes = history(db)
    assert [c.action for c in changes] == ["init", "add", "add", "abandoned", "add"]
    assert not any(c.pending for c in changes)


def test_a_database_that_forbids_overlaps_replays_with_its_card(tmp_path):
    """The OVERLAPS card (DBVERS 2) is part of the bytes each entry hashed: the replay restores
    it, so every state verifies, and the as-of database still forbids overlaps."""
    from nightlake.detrends.detreg.db import encode_db
    from nightlake.detrends.history import adopt

    db = tmp_path / "d.db"
    init_db(db, forbid_overlaps=True)
    saved = [(last_time(db), (tmp_path / "copy0.db"))]
    shutil.copy(db, saved[0][1])
    for n, batch in enumerate([[entry(1, "g", 0, 2, "a")], [entry(1, "g", 2, 2, "b")]], 1):
        register(db, batch)
        saved.append((last_time(db), tmp_path / f"copy{n}.db"))
        shutil.copy(db, saved[-1][1])
    delete_records(db, Selection(filename="/m/a.fits"))
    adopt(db)  # a snapshot of a forbidding database keeps the policy too
    register(db, [entry(2, "g", 0, 2, "c")])
    for when, copy in saved + [(last_time(db), db)]:
        state = replay(db, when)
        assert state.db.overlaps == "forbid"
        assert same(state.db, read_db(copy))
        content = encode_db(
            state.db.records,
            state.db.filters,
            layout=state.db.layout,
            byteorder=state.db.byteorder,
            overlaps=state.db.overlaps,
            date=read_db(copy).date,
        )
        assert content == copy.read_bytes()
    assert read_journal(db)[-2]["action"] == "adopt"
    assert read_journal(db)[-2]["overlaps"] == "forbid"


def test_a_change_journaled_but_never_written_did_not_happen(tmp_path, monkeypatch):
    """A writer that stops between its journal line and the replace leaves the file as it
    was: replays at every time answer the file's state, not the journaled one, before and
    after the next writer marks the entry abandoned."""
    import os

    db = tmp_path / "d.db"
    init_db(db)
    register(db, [entry(1, "g", 0, 2, "a")])
    real_replace = os.replace

    def stopped(src, dst, *args, **kwargs):
        if str(dst) == str(db):
            raise OSError("the writer stopped here")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", stopped)
    with pytest.raises(OSError, match="stopped here"):
        register(db, [entry(2, "r", 0, 2, "never")])
    monkeypatch.undo()
    assert read_journal(db)[-1]["action"] == "add"  # journaled, never written
    far = parse_as_of("2100-01-01")
    for as_of in (None, far):
        assert same(replay(db, as_of).db, read_db(db)) and len(read_db(db)) == 1
    position = replay(db).position
    register(db, [entry(3, "i", 0, 2, "later")])  # settles: abandoned marker, then the add
    assert [e["action"] for e in read_journal(db)][-3:] == ["add", "abandoned", "add"]
    assert same(replay(db, far).db, read_db(db)) and len(read_db(db)) == 2
    assert same(
        replay(db, upto=position.entries).db,
        replay(db, parse_as_of(read_journal(db)[1]["time"])).db,
    )


def test_a_foreign_change_after_the_last_entry_has_no_state_now(tmp_path):
    """The file matches no journaled state and no writer has settled the journal yet: the
    present cannot be replayed (it is not what the journal says), the past still can."""
    db = tmp_path / "d.db"
    init_db(db)
    register(db, [entry(1, "g", 0, 2, "a")])
    foreign = read_db(db)
    write_db(db, foreign.records[:0], foreign.filters)  # a tool without a journal
    with pytest.raises(InputError, match="matches no journaled state.*keeps no journal"):
        replay(db)
    with pytest.raises(InputError, match="matches no journaled state"):
        replay(db, parse_as_of("2100-01-01"))
    assert len(replay(db, parse_as_of(read_journal(db)[1]["time"])).db) == 1


def test_a_foreign_nan_replays_after_the_next_write(tmp_path):
    """A database a C tool wrote, with C's NaN (sign bit set) in sigma: adopted, written
    again by nightlake, its every state replays to the file's own bytes."""
    from nightlake.detrends.detreg.format import make_records

    db = tmp_path / "d.db"
    records = make_records(
        [dict(tstart=1000, tstop=2000, treg=1500, type="bias", ccd=1, filename=b"/c/old.fits")]
    )
    records["sigma"] = np.nan
    write_db(db, records, {})
    raw = bytearray(db.read_bytes())
    at = raw.index(np.float32(np.nan).tobytes())
    raw[at : at + 4] = np.array([0xFFC00000], "<u4").tobytes()  # as C's 0.0/0.0 on x86
    db.write_bytes(bytes(raw))
    assert read_db(db).records["sigma"].view(np.uint32)[0] == 0xFFC00000
    assert CliRunner().invoke(app, ["detregister", "adopt", str(db)]).exit_code == 0
    register(db, [entry(2, "r", 1000, 2000, "new")])
    assert same(replay(db).db, read_db(db)) and np.isnan(read_db(db).records["sigma"][0])


def test_an_adopt_starts_the_replay_afresh(tmp_path):
    """An entry no replay reproduces (a journal written by older code over a foreign NaN,
    here a hand-edited record) spoils the times up to the next adopt, not those after."""
    db = tmp_path / "d.db"
    init_db(db)
    register(db, [entry(1, "g", 0, 2, "a")])
    _edit_last_record(db)
    spoiled = parse_as_of(read_journal(db)[-1]["time"])
    with pytest.raises(FormatError, match="does not reproduce"):
        replay(db)
    assert CliRunner().invoke(app, ["detregister", "adopt", str(db)]).exit_code == 0
    assert same(replay(db).db, read_db(db))
    register(db, [entry(2, "r", 0, 2, "b")])
    assert same(replay(db).db, read_db(db)) and len(read_db(db)) == 2
    with pytest.raises(FormatError, match="does not reproduce"):
        replay(db, spoiled)  # that state stays unknown


def test_writes_landing_while_a_replay_reads_are_not_a_foreign_change(tmp_path, monkeypatch):
    """Two writes after the replay hashed the file and before it reads the journal: the file
    is the state of an entry older than the journal's last two, found among those the journal
    had when the replay began, and the replay answers that state."""
    from nightlake.detrends import history as history_module

    db = tmp_path / "d.db"
    init_db(db)
    register(db, [entry(1, "g", 0, 2, "a")])
    hashed = read_db(db)
    real = history_module.load_journal

    def meanwhile(path):
        monkeypatch.setattr(history_module, "load_journal", real)  # once
        register(db, [entry(2, "r", 0, 2, "b")])
        register(db, [entry(3, "i", 0, 2, "c")])
        return real(path)

    monkeypatch.setattr(history_module, "load_journal", meanwhile)
    state = replay(db)
    assert len(state.db) == 1 and same(state.db, hashed)
    assert state.position.entries == 2  # init and the first add: the others came after
    assert len(replay(db).db) == 3


def test_blank_lines_in_the_journal_are_no_entries(tmp_path):
    """Blank lines (a hand edit) are skipped by every reader: a replay still finds the
    file's state at the end, and the next writer settles on the last two entries, not on
    the blank lines (it appended a false `external` marker)."""
    db = tmp_path / "d.db"
    init_db(db)
    register(db, [entry(1, "g", 0, 2, "a")])
    with journal_path(db).open("ab") as f:
        f.write(b"\n\n\n")
    assert same(replay(db).db, read_db(db))
    register(db, [entry(2, "r", 0, 2, "b")])
    assert [e["action"] for e in read_journal(db)] == ["init", "add", "add"]
    assert same(replay(db).db, read_db(db)) and len(read_db(db)) == 2


def test_an_abandoned_init_is_no_start_to_name(tmp_path):
    """An init that an `abandoned` marker names never happened: with no other start, the
    error says the journal holds none, not that the init's time is the earliest state."""
    from nightlake.detrends.detreg.journal import encode_line, load_journal

    db = tmp_path / "d.db"
    init_db(db)
    register(db, [entry(1, "g", 0, 2, "a")])
    journal = load_journal(db)
    marker = dict(
        {k: journal.entries[-1][k] for k in ("time", "user", "host", "pid", "db")},
        action="abandoned",
        abandons=journal.hashes[0],
        records=[],
        nrecord=1,
        sha256=journal.entries[-1]["sha256"],
    )
    with journal_path(db).open("ab") as f:
        f.write(encode_line(marker, journal.hashes[-1]))
    with pytest.raises(InputError, match="holds no init or adopt entry"):
        replay(db)
