"""The journal ``<db>.journal``: one JSON line per change, each chained to the line before.

Every line ends with ``\\n``; a line (version 2) holds ``journal_version`` and ``prev``, the
hex SHA-256 of the previous line's bytes (its ``\\n`` included; of no bytes for the first
line), so a reader can tell that no line was changed, dropped or inserted. Lines written before
the chain existed (no ``journal_version``) are read as they are: "legacy, unchained"; the first
chained line after them hashes the last of them, so the chain starts there.

A writer, under the database's lock, first *settles* the journal (:func:`settle`):

- a last line without its ``\\n`` was torn by a writer killed while appending; its change never
  happened (the database is replaced only after the line is fsynced), so it is cut off;
- a last entry whose ``sha256`` is not the database's was fsynced but its replace never came
  (the writer died in between): an ``abandoned`` entry records that it did not take effect; a
  database matching no journaled state at all (changed by a tool that keeps no journal) gets an
  ``external`` entry. Both carry the ``sha256`` and ``nrecord`` of the file as found.

Then it appends its own line and fsyncs it, and only then replaces the database.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from nightlake.errors import FormatError
from nightlake.files import fsync_path

JOURNAL_VERSION = 2
#: ``prev`` of the first line of a journal: the SHA-256 of no bytes
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
#: entries that record the state of the file, not a change made by nightlake
MARKERS = ("abandoned", "external")


def journal_path(db_path: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(db_path)}.journal")


def line_hash(line: bytes) -> str:
    """The ``prev`` that the line after ``line`` (its bytes with the ``\\n``) carries."""
    return hashlib.sha256(line).hexdigest()


@dataclass
class Journal:
    """A journal as read: entries (oldest first) with their line numbers and line hashes."""

    path: Path
    entries: list[dict] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # 1-based line number of each entry
    hashes: list[str] = field(default_factory=list)  # line_hash of each entry's line
    prevs: list[str] = field(default_factory=list)  # line_hash of the line before each entry
    torn_tail: bytes = b""  # bytes after the last "\n": a line never completed

    @property
    def legacy(self) -> int:
        """How many entries predate the hash chain."""
        return sum("journal_version" not in e for e in self.entries)

    def chain_problems(self) -> list[str]:
        """One message per chained entry whose ``prev`` is not the line before it, and per
        unchained entry after chained ones."""
        problems, chained = [], False
        for entry, number, prev in zip(self.entries, self.lines, self.prevs):
            if "journal_version" not in entry:
                if chained:
                    problems.append(
                        f"{self.path}:{number}: entry without a hash chain after "
                        "chained ones (written by an older nightlake?)"
                    )
                continue
            chained = True
            if entry.get("prev") != prev:
                problems.append(
                    f"{self.path}:{number}: hash chain broken: prev is "
                    f"{str(entry.get('prev'))[:12]}…, the line before hashes to "
                    f"{prev[:12]}… (a line was changed, removed or inserted)"
                )
        return problems


def load_journal(db_path: str | os.PathLike) -> Journal:
    """Read the journal of a database (empty if there is none).

    An unterminated last line is not an entry (its change never happened): it is left out and
    kept in ``torn_tail``. A complete line that is not JSON raises FormatError.
    """
    path = journal_path(db_path)
    journal = Journal(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return journal
    complete, _, journal.torn_tail = data.rpartition(b"\n")
    prev = EMPTY_SHA256
    for number, line in enumerate(complete.split(b"\n") if complete else [], 1):
        raw = line + b"\n"
        if line.strip():
            try:
                entry = json.loads(line.decode("utf-8", "surrogateescape"))
            except json.JSONDecodeError as exc:
                raise FormatError(path, f"not a JSON line: {exc.msg}", line=number) from None
            if not isinstance(entry, dict):
                raise FormatError(path, "not a JSON object", line=number)
            journal.entries.append(entry)
            journal.lines.append(number)
            journal.hashes.append(line_hash(raw))
            journal.prevs.append(prev)
        prev = line_hash(raw)
    return journal


#: journal lines settle reads from the end: the last two entries, past blank lines
_TAIL_LINES = 16


def entry_count(db_path: str | os.PathLike) -> int:
    """How many entries the journal holds, without parsing them: its complete lines but the
    blank ones, as :func:`load_journal` reads them (0 without a journal)."""
    try:
        complete = journal_path(db_path).read_bytes().split(b"\n")[:-1]
    except FileNotFoundError:
        return 0
    return sum(1 for line in complete if line.strip())


def _tail(fd: int, size: int, want: int = 2) -> tuple[list[bytes], int]:
    """The last ``want`` complete lines (with their ``\\n``) of an open journal and the offset
    where the last complete line ends (``size`` unless the tail is torn)."""
    buf, pos = b"", size
    while pos > 0 and buf.count(b"\n") <= want:
        step = min(1 << 16, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
    cut = buf.rfind(b"\n") + 1
    lines = [line + b"\n" for line in buf[:cut].split(b"\n")[:-1]]
    if pos > 0:
        lines = lines[1:]  # the first piece starts mid-line
    return lines[-want:], pos + cut


def settle(db_path: Path, found: tuple[str, int] | None, base: dict) -> str:
    """Make the journal ready for the next line; return the ``prev`` that line carries.

    Call with the lock held. ``found`` is (sha256, nrecord) of the database as it is now (None
    if there is none); ``base`` the fields every entry carries (time, user, host, pid, db).
    Cuts a torn last line and appends an ``abandoned``/``external`` entry when the last entry
    does not describe the file (see the module docstring).
    """
    path = journal_path(db_path)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return EMPTY_SHA256
    try:
        size = os.fstat(fd).st_size
        lines, end = _tail(fd, size, want=_TAIL_LINES)
        if end < size:
            os.ftruncate(fd, end)
            os.fsync(fd)
        if not lines:
            return EMPTY_SHA256
        prev = line_hash(lines[-1])
        if found is None:
            return prev
        states = []
        for line in lines:
            if not line.strip():
                continue  # a blank line (a hand edit) is no entry, as load_journal reads it
            try:
                states.append(json.loads(line).get("sha256"))
            except (ValueError, AttributeError):
                states.append(None)  # `detregister check` reports it; nothing to settle on
        states = states[-2:]
        sha256, nrecord = found
        if not states or states[-1] == sha256:
            return prev
        if len(states) == 2 and states[0] == sha256:
            marker = dict(
                base,
                action="abandoned",
                abandons=prev,
                reason="the last entry was journaled but its database replace never "
                "happened (writer stopped in between)",
            )
        else:
            marker = dict(
                base,
                action="external",
                reason="the database matches no journaled state: changed by a tool "
                "that keeps no journal",
            )
        line = encode_line(dict(marker, records=[], nrecord=nrecord, sha256=sha256), prev)
        os.lseek(fd, 0, os.SEEK_END)
        os.write(fd, line)
        os.fsync(fd)
        return line_hash(line)
    finally:
        os.close(fd)


def encode_line(entry: dict, prev: str) -> bytes:
    """An entry as its journal line: version and chain first, ``\\n`` last."""
    full = {"journal_version": JOURNAL_VERSION, "prev": prev, **entry}
    return (json.dumps(full, separators=(",", ":")) + "\n").encode("utf-8", "surrogateescape")


def append_line(db_path: Path, line: bytes) -> None:
    """Append one line (from :func:`encode_line`) and fsync it; with the lock held."""
    path = journal_path(db_path)
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        view = memoryview(line)
        while view:  # a short write (full disk, signal) must not leave half a line unnoticed
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_path(path.parent if str(path.parent) else Path("."))
