"""The DetReg database as it was at any time: replay of its journal, the list of changes.

The journal (``detreg/journal.py``) holds every change with its UTC time and full records, and
the SHA-256 of the file each change produced. A replay starts from the last ``init`` or
``adopt`` entry (an ``adopt`` snapshots a database written before nightlake journaled it: its
full records, filter table, layout and byte order), applies each ``add``/``repair`` (records
appended) and ``delete`` (records removed by their index) in order up to the time asked, skips
an entry an ``abandoned`` marker names, and checks each state it passes against the entry's
``sha256`` by encoding the file bytes again (the DATE card of a journaled write is its entry's
time). An ``external`` marker means a tool without a journal changed the file: nothing after it
is reproducible until the next ``adopt``.

Reads only: no lock, nothing written (except :func:`adopt`, which journals under the lock).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from nightlake.detrends.detreg.db import (
    DEFAULT_LOCK_TIMEOUT,
    DetRegDB,
    _journal_entry,
    encode_db,
    locked,
    read_db,
    real_path,
    record_dict,
)
from nightlake.detrends.detreg.format import RECORD_DTYPE, records_from_json
from nightlake.detrends.detreg.journal import (
    Journal,
    append_line,
    encode_line,
    entry_count,
    load_journal,
    settle,
)
from nightlake.errors import FormatError, InputError, UsageError

#: entries a replay starts from
STARTS = ("init", "adopt")


def parse_as_of(text: str) -> datetime:
    """``--as-of``: ISO-8601 (UTC unless it names an offset) or Unix seconds → aware UTC, by
    the one time parser (:func:`nightlake.detrends.times.parse_time_us`)."""
    from nightlake.detrends.times import parse_time_us

    try:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=parse_time_us(text))
    except (ValueError, OverflowError, ArithmeticError):
        raise UsageError(
            f"--as-of {text!r}: not a time (expected ISO-8601 UTC like "
            "2026-12-01T14:53:54.5 or Unix seconds)"
        ) from None


def entry_time(journal: Journal, n: int) -> datetime:
    """The time of entry ``n``; FormatError naming the line when it is missing or not ISO."""
    text = journal.entries[n].get("time")
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        raise FormatError(
            journal.path, f"entry time {text!r} is not ISO-8601", line=journal.lines[n]
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass
class Position:
    """Where in the journal a state is: entries applied so far and the hash of the last line."""

    entries: int
    last_hash: str
    time: datetime | None

    def as_dict(self) -> dict:
        return {
            "entries": self.entries,
            "last_entry_sha256": self.last_hash,
            "time": self.time.isoformat() if self.time else None,
        }


@dataclass
class _State:
    records: np.ndarray
    filters: dict[int, str]
    layout: str
    byteorder: str
    overlaps: str = "allow"  # the OVERLAPS card: part of the bytes each entry hashed
    sha256: str = ""
    verified: list[int] = field(default_factory=list)


def _records_of(journal: Journal, n: int, entry: dict) -> np.ndarray:
    try:
        return records_from_json(entry.get("records") or [])
    except (ValueError, TypeError, OverflowError) as exc:
        raise FormatError(journal.path, f"bad record: {exc}", line=journal.lines[n]) from None


def _apply(journal: Journal, n: int, state: _State | None) -> _State | None:
    entry = journal.entries[n]
    action = entry.get("action")
    where = journal.lines[n]
    if action == "init":
        return _State(
            np.zeros(0, RECORD_DTYPE),
            {},
            entry.get("layout", "LP64"),
            entry.get("byteorder", "little"),
            entry.get("overlaps", "allow"),
        )
    if action == "adopt":
        filters = {int(c): name for c, name in (entry.get("filters") or {}).items()}
        return _State(
            _records_of(journal, n, entry),
            filters,
            entry["layout"],
            entry["byteorder"],
            entry.get("overlaps", "allow"),
        )
    if action == "external":
        return None
    if state is None:
        return None
    if action in ("add", "repair"):
        filters = dict(state.filters)
        filters.update({int(c): name for c, name in (entry.get("filters_added") or {}).items()})
        records = np.concatenate([state.records, _records_of(journal, n, entry)])
        return _State(records, filters, state.layout, state.byteorder, state.overlaps)
    if action == "delete":
        indices = [rec.get("index") for rec in entry.get("records") or []]
        if any(not isinstance(i, int) or not 0 <= i < len(state.records) for i in indices):
            raise FormatError(journal.path, "a deleted record has no valid index", line=where)
        keep = np.ones(len(state.records), dtype=bool)
        keep[indices] = False
        return _State(
            state.records[keep], state.filters, state.layout, state.byteorder, state.overlaps
        )
    raise FormatError(journal.path, f"unknown journal action {action!r}", line=where)


def _verify(journal: Journal, n: int, state: _State, when: datetime) -> None:
    """The state equals the file entry ``n`` hashed: encode it and compare the SHA-256."""
    entry = journal.entries[n]
    want = entry.get("sha256")
    # DATE is the entry's second for files written since it was so; older writers stamped
    # the moment of encoding, a second or two after the entry's time.
    for late in (0, 1, 2, -1):
        date = (when + timedelta(seconds=late)).strftime("%Y-%m-%dT%H:%M:%S")
        content = encode_db(
            state.records,
            state.filters,
            layout=state.layout,
            byteorder=state.byteorder,
            overlaps=state.overlaps,
            date=date,
        )
        if hashlib.sha256(content).hexdigest() == want:
            state.sha256 = want
            return
    if entry.get("action") == "adopt" and len(state.records) == entry.get("nrecord"):
        state.sha256 = want  # a foreign file's header need not be ours: its records are
        return
    raise FormatError(
        journal.path,
        f"replay does not reproduce the file the {entry.get('action')} entry at "
        f"{entry.get('time')} hashed ({str(want)[:12]}…): the journal does not describe "
        "this database",
        line=journal.lines[n],
    )


@dataclass
class Replay:
    """The database as of a time: ``db`` (a :class:`DetRegDB` of the replayed records),
    ``position`` in the journal, ``sha256`` of the file it was then."""

    db: DetRegDB
    position: Position
    sha256: str
    as_of: datetime | None


def replay(
    db_path: str | os.PathLike,
    as_of: datetime | None = None,
    *,
    verify: bool = True,
    upto: int | None = None,
) -> Replay:
    """The database ``db_path`` as it was at ``as_of`` (UTC; None = after the last entry), or
    after its first ``upto`` journal entries (a recorded journal position).

    InputError when the time precedes the journal's earliest reproducible state (naming it),
    or falls where the journal cannot say (after an ``external`` marker, before an adopt).
    """
    path = real_path(db_path)
    if not path.exists():
        raise InputError(db_path, "no such database")
    journal, happened = _journal_and_file(path, upto)
    problems = journal.chain_problems()
    if problems:
        raise FormatError(journal.path, problems[0].split(": ", 1)[-1])
    if happened is None and (as_of is None or as_of > entry_time(journal, -1)):
        last = journal.entries[-1].get("time")
        raise InputError(
            db_path,
            f"no state as of {as_of.isoformat() if as_of else 'now'}: the database matches no "
            f"journaled state, so a tool that keeps no journal changed it after {last} "
            "(`detregister adopt` snapshots it for later replays)",
        )
    abandoned = {e.get("abandons") for e in journal.entries if e.get("action") == "abandoned"}
    applied, last_time = 0, None  # the entries up to the time asked
    for n in range(len(journal.entries)):
        when = entry_time(journal, n)
        if (as_of is not None and when > as_of) or (upto is not None and n >= upto):
            break
        if happened is not None and n >= happened:
            break  # journaled, but the file was never replaced: it did not happen (yet)
        applied, last_time = n + 1, when
    # From the last init or adopt among them: each starts the state afresh, so what came
    # before it (an entry no replay reproduces, a foreign change) does not count.
    starts = [
        n
        for n in range(applied)
        if journal.entries[n].get("action") in STARTS and journal.hashes[n] not in abandoned
    ]
    state: _State | None = None
    earliest: datetime | None = None
    unknown_since: datetime | None = None
    for n in range(starts[-1] if starts else 0, applied):
        entry, when = journal.entries[n], entry_time(journal, n)
        action = entry.get("action")
        if action == "abandoned" or journal.hashes[n] in abandoned:
            continue
        state = _apply(journal, n, state)
        if action in STARTS and earliest is None:
            earliest = when
        if state is None:
            unknown_since = when if action == "external" else unknown_since
            continue
        if verify:
            _verify(journal, n, state, when)
        else:
            state.sha256 = entry.get("sha256", "")
    if state is None:
        raise _unreproducible(db_path, journal, as_of, earliest, unknown_since, abandoned)
    position = Position(applied, journal.hashes[applied - 1], last_time)
    db = DetRegDB(
        path, state.layout, state.byteorder, state.filters, state.records, overlaps=state.overlaps
    )
    db.__dict__["fingerprint"] = {
        "path": str(path),
        "sha256": state.sha256,
        "as_of": as_of,
        "journal": position.as_dict(),
    }
    return Replay(db, position, state.sha256, as_of)


def _journal_and_file(path: Path, upto: int | None) -> tuple[Journal, int | None]:
    """The journal, and how many of its entries the database file has seen (``upto``
    given: all, the question is that position). A writer appends its entry, then replaces
    the file: if it stopped in between (or is still at it), the last entry's state is not
    the file's but the one before it is, and that entry has not happened; the next writer
    marks it abandoned (:func:`~nightlake.detrends.detreg.journal.settle`, whose rule this
    is). None when the file is no state the journal's end describes: a tool without a
    journal changed it. The journal's lines are counted before the file is hashed and the
    journal read after, so writes landing in between are found among the new entries."""
    if upto is not None:
        journal = load_journal(path)
        return journal, len(journal.entries)
    before = entry_count(path)
    on_disk = hashlib.sha256(path.read_bytes()).hexdigest()
    journal = load_journal(path)
    if not journal.entries:
        return journal, 0
    for k in range(len(journal.entries) - 1, max(before - 2, 0) - 1, -1):
        if journal.entries[k].get("sha256") == on_disk:
            return journal, k + 1
    return journal, None


def _unreproducible(
    db_path, journal, as_of, earliest, unknown_since, abandoned=frozenset()
) -> InputError:
    when = as_of.isoformat() if as_of else "now"
    if unknown_since is not None:
        return InputError(
            db_path,
            f"no state as of {when}: a tool that keeps no journal changed the database at "
            f"{unknown_since.isoformat()} (`detregister adopt` snapshots it for later replays)",
        )
    if earliest is None:
        starts = [
            entry_time(journal, n)
            for n, e in enumerate(journal.entries)
            if e.get("action") in STARTS and journal.hashes[n] not in abandoned
        ]
        if not starts:
            return InputError(
                db_path,
                "the journal holds no init or adopt entry: the database predates it "
                "(`detregister adopt` snapshots it; replays start there)",
            )
        earliest = starts[0]
    return InputError(
        db_path,
        f"no state as of {when}: the earliest reproducible time is {earliest.isoformat()}",
    )


def read_as_of(db_path: str | os.PathLike, as_of: datetime | None) -> DetRegDB:
    """``read_db`` now, or the replayed database at ``as_of``."""
    return read_db(db_path) if as_of is None else replay(db_path, as_of).db


# --------------------------------------------------------------------------------------------
# The database as of a time, for SQL

#: the name :func:`register_as_of` gives the replayed records on a connection
AS_OF_TABLE = "detrends_as_of"


def lake_db(lake, db: str | os.PathLike | None = None) -> Path:
    """The database a lake answers from: ``db`` if given, else the one the lake is tied to,
    else the one its mirror was synced from, else ``$NIGHTLAKE_DETREG``."""
    from nightlake.detrends.mirror import DB_ENV, default_db, manifest
    from nightlake.detrends.sync import tied_db

    if db is not None and str(db) != "":
        return Path(db)
    tied = tied_db(lake)
    if tied:
        return Path(tied)
    info = manifest(lake) or {}
    if isinstance(info.get("db_path"), str):
        return Path(info["db_path"])
    env = default_db(None)
    if env is None:
        raise UsageError(f"no detrend database: give --db DB, run nightlake sync, or set {DB_ENV}")
    return env


def register_as_of(
    con,
    db_path: str | os.PathLike,
    as_of: datetime | None,
    name: str = AS_OF_TABLE,
    *,
    upto: int | None = None,
) -> Replay:
    """Register the database as of ``as_of`` on the DuckDB connection ``con`` as the relation
    ``name``, with the mirror's columns (the same records→table function ``nightlake sync``
    uses), so ``resolve_detrends(type, detrend_source := 'detrends_as_of')`` and the other
    macros with a ``detrend_source`` answer from it. Returns the replay (its journal position).

    A registered Arrow table rather than SQL over the journal: the replay must be verified
    against each entry's SHA-256 by encoding the file, which SQL cannot do.
    """
    from nightlake.detrends.sync import records_table

    state = replay(db_path, as_of, upto=upto)
    con.register(name, records_table(state.db))
    return state


# --------------------------------------------------------------------------------------------
# The list of changes


@dataclass(frozen=True)
class Change:
    """One journal entry as ``nightlake history`` lists it."""

    line: int
    time: str
    action: str
    user: str | None
    host: str | None
    records: list[dict]
    nrecord: int | None
    sha256: str | None
    #: journaled, but the file is still the state before it: its writer is between its
    #: journal append and its replace, or stopped there (the next write marks it abandoned)
    pending: bool = False

    def as_dict(self) -> dict:
        return {
            "line": self.line,
            "time": self.time,
            "action": self.action,
            "user": self.user,
            "host": self.host,
            "nrecord": self.nrecord,
            "sha256": self.sha256,
            "records": self.records,
            "pending": self.pending,
        }


def history(db_path: str | os.PathLike) -> list[Change]:
    """Every journal entry, oldest first, an entry the file has not seen marked ``pending``;
    FormatError when the hash chain is broken."""
    path = real_path(db_path)
    if path.exists():
        journal, seen = _journal_and_file(path, None)
    else:
        journal = load_journal(path)
        seen = None
    problems = journal.chain_problems()
    if problems:
        raise FormatError(journal.path, problems[0].split(": ", 1)[-1])
    return [
        Change(
            line=journal.lines[n],
            time=str(e.get("time")),
            action=str(e.get("action")),
            user=e.get("user"),
            host=e.get("host"),
            records=list(e.get("records") or []),
            nrecord=e.get("nrecord"),
            sha256=e.get("sha256"),
            pending=seen is not None and n >= seen,
        )
        for n, e in enumerate(journal.entries)
    ]


# --------------------------------------------------------------------------------------------
# Adopting a database written by other tools


def adopt(db_path: str | os.PathLike, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> dict:
    """Journal an ``adopt`` entry: a snapshot of the database as it is (full records, filter
    table, layout, byte order), so that replays can start from it. Does not change the file."""
    path = real_path(db_path)
    if not path.exists():
        raise InputError(db_path, "no such database")
    with locked(path, lock_timeout):
        db = read_db(path)
        sha256 = db.fingerprint["sha256"]
        entry = _journal_entry(
            path,
            "adopt",
            [record_dict(r, db.filters) for r in db.records],
            layout=db.layout,
            byteorder=db.byteorder,
            overlaps=db.overlaps,
            filters={str(c): name for c, name in db.filters.items()},
        )
        entry = dict(entry, nrecord=len(db), sha256=sha256)
        base = {k: entry[k] for k in ("time", "user", "host", "pid", "db")}
        prev = settle(Path(path), (sha256, len(db)), base)
        append_line(Path(path), encode_line(entry, prev))
    return entry


__all__ = [
    "AS_OF_TABLE",
    "Change",
    "Position",
    "Replay",
    "adopt",
    "history",
    "lake_db",
    "parse_as_of",
    "read_as_of",
    "register_as_of",
    "replay",
]
