"""``detregister check``: verify a database and its journal; repair only what is asked.

Checked: the header, the sizes (records NRECORD declares, nothing but zero padding after them),
every record, the journal (complete lines, JSON, the hash chain) and that the last journal entry
describes the file (its ``sha256``). A clean database is read without a lock; one that shows a
problem is read again under the writer lock, since a write in progress (its journal entry
appended, the file not yet replaced) looks like one. A repair takes the writer lock and
journals what it did.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nightlake.detrends.detreg.db import (
    DEFAULT_LOCK_TIMEOUT,
    _commit,
    _decode,
    _existing,
    lock_path,
    locked,
    real_path,
    record_dict,
)
from nightlake.detrends.detreg.journal import Journal, load_journal, settle
from nightlake.errors import FormatError, InputError, LockTimeout
from nightlake.files import lock_wait


@dataclass
class CheckReport:
    """What check found: ``problems`` (each one line; none = clean) and ``notes`` (facts)."""

    path: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    nrecord: int | None = None
    entries: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        parts = [f"{self.nrecord} records"] if self.nrecord is not None else []
        parts.append(f"journal: {self.entries} entries" if self.entries else "no journal")
        return f"{self.path}: ok: " + "; ".join(parts + self.notes)


def check_db(db_path: str | os.PathLike, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> CheckReport:
    """Check a database and its journal; never writes them.

    Read without a lock first; if that finds a problem, read again holding the writer lock
    (waiting up to ``lock_timeout`` s): a writer between its journal append and its replace
    is not a problem. When the lock cannot be had, the first reading stands, led by a line
    saying so. Where no lock file exists, no writer of ours is at work and none is made.
    """
    lock_wait(lock_timeout)  # a bad one is refused whether or not a lock is needed
    report = _check(db_path)
    lock = lock_path(real_path(db_path))
    if report.ok or not lock.exists():
        return report
    with ExitStack() as held:
        try:
            held.enter_context(locked(db_path, lock_timeout))
        except LockTimeout as exc:
            report.problems.insert(0, f"{exc}: a write may be in progress; check again after it")
            return report
        except OSError as exc:  # a lock file this user may not open (a read-only copy)
            report.problems.insert(
                0,
                f"{lock}: cannot take the writer lock ({exc.strerror}); read without it, "
                "so a write in progress would look like what follows",
            )
            return report
        return _check(db_path)


def _check(db_path: str | os.PathLike) -> CheckReport:
    path = _existing(db_path)
    report = CheckReport(Path(db_path))
    raw = path.read_bytes()
    sha256 = hashlib.sha256(raw).hexdigest()
    try:
        report.nrecord = len(_decode(Path(db_path), np.frombuffer(raw, np.uint8), None))
    except FormatError as exc:
        report.problems.append(str(exc))
    try:
        journal = load_journal(path)
    except FormatError as exc:
        report.problems.append(str(exc))
        return report
    report.entries = len(journal.entries)
    _check_journal(journal, sha256, report)
    return report


def _check_journal(journal: Journal, sha256: str, report: CheckReport) -> None:
    if journal.torn_tail:
        report.problems.append(
            f"{journal.path}: ends in a partial line of {len(journal.torn_tail)} bytes (a writer "
            "killed while appending; that change never happened): the next write or "
            "`check --repair` cuts it"
        )
    if journal.legacy:
        report.notes.append(f"{journal.legacy} legacy entries, unchained")
    report.problems.extend(journal.chain_problems())
    if not journal.entries:
        return
    last, number = journal.entries[-1], journal.lines[-1]
    if last.get("sha256") == sha256:
        return
    where = f"{journal.path}:{number}"
    if len(journal.entries) > 1 and journal.entries[-2].get("sha256") == sha256:
        report.problems.append(
            f"{where}: the last entry ({last.get('action')} at {last.get('time')}) never took "
            "effect: its writer stopped after journaling and before replacing the database, "
            "which is the state before it; the next write or `check --repair` marks it "
            "abandoned"
        )
    else:
        report.problems.append(
            f"{where}: the database's sha256 {sha256[:12]}… matches no journaled state (last "
            f"entry: {str(last.get('sha256'))[:12]}…): it was changed by a tool that keeps no "
            "journal, or restored from a copy; the next write or `check --repair` records it "
            "as external"
        )


def repair_db(
    db_path: str | os.PathLike,
    *,
    keep_extra: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> list[str]:
    """Do the documented repairs under the writer lock; return one line per thing done.

    Always: cut a torn journal tail; record an entry that never took effect as ``abandoned``
    (or an unjournaled change as ``external``). With ``keep_extra``: whole, valid records found
    after the ones NRECORD declares become part of the database (NRECORD fixed), journaled as a
    ``repair`` entry holding them.
    """
    path = _existing(db_path)
    done = []
    with locked(path, lock_timeout):
        before = load_journal(path)
        raw = path.read_bytes()
        sha256 = hashlib.sha256(raw).hexdigest()
        if keep_extra:
            _keep_extra(path, raw, done)  # its write settles the journal first
        else:
            settle(path, (sha256, _nrecord_or_zero(path, raw)), _base(path))
        after = load_journal(path)
    if before.torn_tail:
        done.append(f"{before.path}: cut a partial last line of {len(before.torn_tail)} bytes")
    for entry in after.entries[len(before.entries) :]:
        if entry.get("action") in ("abandoned", "external"):
            done.append(f"{after.path}: appended an '{entry['action']}' entry")
    return done


def _base(path: Path) -> dict:
    from nightlake.detrends.detreg.db import _journal_entry

    entry = _journal_entry(path, "repair", [])
    return {k: entry[k] for k in ("time", "user", "host", "pid", "db")}


def _nrecord_or_zero(path: Path, raw: bytes) -> int:
    try:
        return len(_decode(path, np.frombuffer(raw, np.uint8), None, keep_extra=True))
    except FormatError:
        return 0


def _keep_extra(path: Path, raw: bytes, done: list[str]):
    """Rewrite the file holding every whole record present (NRECORD counted them short)."""
    declared = read_db_declared(path, raw)
    full = _decode(path, np.frombuffer(raw, np.uint8), None, keep_extra=True)
    kept = len(full) - declared
    if kept <= 0:
        raise InputError(path, "--keep-extra: no records after the ones NRECORD declares")
    records = full.records
    journal = [
        dict(record_dict(r, full.filters), index=declared + i)
        for i, r in enumerate(records[declared:])
    ]
    db = _commit(full, records, full.filters, "repair", journal, kept_extra=kept)
    done.append(
        f"{path}: kept {kept} record(s) found after the {declared} NRECORD declared "
        f"(NRECORD is now {len(db)})"
    )


def read_db_declared(path: Path, raw: bytes) -> int:
    """NRECORD as the header declares it."""
    from nightlake.detrends.detreg.format import layout_of
    from nightlake.fits import primary_header

    return layout_of(primary_header(raw, path).cards, path)[2]


__all__ = ["CheckReport", "check_db", "repair_db"]
