"""The DetReg database on disk: validated reads, locked atomic writes, the journal.

Files next to a database ``detrend.db``::

    detrend.db            the database (FITS header + C records), replaced atomically
    detrend.db.lock       exclusive lock held by writers (filelock); readers never lock
    detrend.db.journal    append-only JSON lines, one per change, hash-chained (journal.py)
    .detrend.db.*.tmp     a new version being written (stale ones are removed under the lock)

Writers resolve symlinks first (the lock, the journal and the replace belong to the real file),
lock, re-read and validate the file under the lock (never writing over a file that failed
validation), write the new version to a temp file in the same directory, fsync it, settle the
journal and append and fsync its line, ``os.replace`` the temp file over the database and fsync
the directory. Readers therefore see the old or the new file, never a torn one.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import numpy as np

from nightlake.detrends.detreg.format import (
    ANY_FILTER,
    FIELDS,
    LAYOUTS,
    OPEN_ENDED,
    RECORD_DTYPE,
    TYPE_CODES,
    build_header,
    check_writable,
    columns_as_arrow,
    drop_bytes_after_nul,
    encode_records,
    filters_from_cards,
    layout_of,
    make_records,
    max_filter_name_length,
    overlap_policy,
    to_native,
    validate_records,
)
from nightlake.detrends.detreg.journal import (
    append_line,
    encode_line,
    load_journal,
    settle,
)
from nightlake.detrends.detreg.record import TYPE_NAMES, DetRegRecord
from nightlake.errors import FormatError, InputError, LockTimeout
from nightlake.files import atomic_replace, lock_wait
from nightlake.fits import BLOCK, primary_header

DEFAULT_LOCK_TIMEOUT = 30.0
MAX_FILTER_CODE = 9999  # FILT<code> must fit the 8 characters of a FITS keyword


def lock_path(db_path: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(db_path)}.lock")


def real_path(db_path: str | os.PathLike) -> Path:
    """The file a (possibly symlinked) database path names: writers lock, journal and replace
    it, so that a link is never replaced by a regular file (forking the database)."""
    return Path(os.path.realpath(db_path))


class DetRegDB:
    """A DetReg database as read: records (native order, read-only), filter table, layout.

    The constructor takes the records as the file lays them out (any :func:`record_dtype`) or
    already in :data:`RECORD_DTYPE`; ``records`` / ``raw_records`` are always
    :data:`RECORD_DTYPE` (converted on first use); ``fingerprint`` identifies the file as read
    (path, size, mtime_ns, sha256 of the bytes); ``to_arrow()`` gives a table.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        layout: str,
        byteorder: str,
        filters: dict[int, str],
        records: np.ndarray,
        date: str | None = None,
        *,
        overlaps: str = "allow",
        _raw: bytes | bytearray | None = None,
        _stat: os.stat_result | None = None,
    ) -> None:
        self.path = Path(path)
        self.layout = layout
        self.byteorder = byteorder
        self.filters = filters
        self.date = date
        self.overlaps = overlaps  # 'forbid': add refuses overlapping records (OVERLAPS card)
        self._file_records = records  # as the file lays them out (or already native)
        self._raw = _raw
        self._stat = _stat

    def __repr__(self) -> str:
        return (
            f"DetRegDB({str(self.path)!r}, {self.layout} {self.byteorder}, "
            f"{len(self)} records, {len(self.filters)} filters)"
        )

    @cached_property
    def records(self) -> np.ndarray:
        """The records with every filename cut at its NUL (loads pyarrow; computed once)."""
        return drop_bytes_after_nul(self._records, self.filenames_arrow)

    @property
    def raw_records(self) -> np.ndarray:
        """The records as decoded, numpy only and without a copy (read-only).

        Every field equals :attr:`records` except ``filename``, which may still hold bytes a C
        writer left after its NUL: cut one with ``bytes(name).split(b"\\0", 1)[0]``. For readers
        that must start fast (detsearch) and need the numbers, not all the filenames.
        """
        return self._records

    @cached_property
    def _records(self) -> np.ndarray:
        """The records in :data:`RECORD_DTYPE`: the file's own for native LP64 files, else
        converted on first use (readers that go straight to Arrow never need them)."""
        return to_native(self._file_records)

    @cached_property
    def _columns(self) -> dict:
        """Every field as an Arrow array (computed once, on first use), straight from the
        file's records: see columns_as_arrow."""
        return columns_as_arrow(self._file_records)

    @property
    def filenames_arrow(self):
        """Filenames as Arrow, cut at each NUL: ``string`` when all are ASCII, else ``binary``."""
        return self._columns["filename"]

    def __len__(self) -> int:
        return len(self._file_records)

    @cached_property
    def fingerprint(self) -> dict:
        """Identity of the file as read: absolute path, size, mtime_ns, inode, sha256."""
        raw, st = self._raw, self._stat
        if raw is None or st is None:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                raw = f.read()
        return {
            "path": str(Path(self.path).absolute()),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "inode": st.st_ino,
            "sha256": hashlib.sha256(raw).hexdigest(),
        }

    def filter_code(self, name: str) -> int | None:
        """The code of a filter name in the header table, or None."""
        for code, known in self.filters.items():
            if known == name:
                return code
        return None

    def to_arrow(self):
        """One row per record: ``index`` (file order), the record fields, filename as str."""
        import pyarrow as pa

        columns = {"index": pa.array(np.arange(len(self), dtype=np.int64)), **self._columns}
        names = columns["filename"]
        if not pa.types.is_string(names.type):  # not all ASCII
            try:
                columns["filename"] = names.cast(pa.string())
            except pa.ArrowInvalid:  # not UTF-8: keep the bytes visible, escaped
                columns["filename"] = pa.array(
                    [b.decode("utf-8", "backslashreplace") for b in names.to_pylist()],
                    type=pa.string(),
                )
        return pa.table(columns)


def record_dict(rec: np.void, filters: dict[int, str]) -> dict:
    """One record as the journal writes it (see :meth:`DetRegRecord.to_json`)."""
    return DetRegRecord.from_raw(rec, filters).to_json()


# --------------------------------------------------------------------------------------------
# Reading


def read_db(path: str | os.PathLike) -> DetRegDB:
    """Read and validate a DetReg file; raise FormatError naming the file on any defect."""
    path = Path(path)
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        raw = np.empty(st.st_size, dtype=np.uint8)  # like numpy.fromfile: no zero-filling
        size = f.readinto(memoryview(raw))
        extra = f.read()  # the file changed after fstat (a foreign writer): take what is there
    if size < st.st_size or extra:
        raw = np.concatenate([raw[:size], np.frombuffer(extra, np.uint8)])
    return _decode(path, raw, st)


def _records_after(raw, end: int, recsize: int) -> int:
    """How many bytes after ``end`` (the declared records) reach up to the last non-zero byte,
    rounded up to whole records: 0 when only zero padding follows."""
    tail = np.frombuffer(raw, np.uint8, offset=min(end, len(raw)))
    nonzero = np.flatnonzero(tail)
    if not len(nonzero):
        return 0
    return -(-(int(nonzero[-1]) + 1) // recsize) * recsize


def _decode(path: Path, raw, st: os.stat_result | None, *, keep_extra: bool = False) -> DetRegDB:
    """Validate and decode a file's bytes; ``keep_extra`` also takes the whole records found
    after the ones NRECORD declares (for ``check --repair --keep-extra``)."""
    header = primary_header(raw, path)
    cards = header.cards
    layout, byteorder, nrecord = layout_of(cards, path)
    recsize = LAYOUTS[layout]["recsize"]
    needed = header.length + nrecord * recsize
    if len(raw) < needed:
        raise FormatError(
            path,
            f"truncated: the header and {nrecord} records of {recsize} "
            f"bytes need {needed} bytes, the file has {len(raw)} "
            f"({needed - len(raw)} bytes missing)",
        )
    extra = _records_after(raw, needed, recsize)
    if extra and not keep_extra:
        whole = extra // recsize
        raise FormatError(
            path,
            f"data after the {nrecord} records NRECORD declares: {extra} "
            f"bytes that are not zero padding ({whole} more whole record(s) "
            f"of {recsize} bytes); a rewrite would drop them: see "
            "`detregister check --repair --keep-extra`",
        )
    if keep_extra:
        if extra % recsize:
            raise FormatError(
                path,
                f"{extra} bytes after the {nrecord} records NRECORD "
                f"declares are not whole records of {recsize} bytes",
            )
        nrecord += extra // recsize
    records = validate_records(raw, header.length, nrecord, layout, byteorder, path)
    date = cards.get("DATE")
    return DetRegDB(
        path=path,
        layout=layout,
        byteorder=byteorder,
        filters=filters_from_cards(cards, path),
        records=records,
        date=date if isinstance(date, str) else None,
        overlaps=overlap_policy(cards, path),
        _raw=raw,
        _stat=st,
    )


# --------------------------------------------------------------------------------------------
# Writing


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def encode_db(
    records: np.ndarray,
    filters: dict[int, str],
    *,
    layout: str,
    byteorder: str,
    overlaps: str = "allow",
    date: str | None = None,
) -> bytes:
    """The complete bytes of a DetReg file: header, records, zero padding to a whole block.

    ``date`` (the DATE card, ``YYYY-MM-DDThh:mm:ss``) defaults to now; a journaled write uses
    its entry's time, so that a replay of the journal rebuilds the very bytes it hashed.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'LP64' or 'ILP32', not {layout!r}")
    if byteorder not in ("little", "big"):
        raise ValueError(f"byteorder must be 'little' or 'big', not {byteorder!r}")
    header = build_header(
        nrecord=len(records),
        layout=layout,
        byteorder=byteorder,
        filters=filters,
        date=date or _utc_now(),
        overlaps=overlaps,
    )
    data = encode_records(records, layout, byteorder)
    return header + data + b"\0" * (-len(data) % BLOCK)


def _atomic_replace(
    path: Path, content: bytes, before_replace: Callable[[], None] | None = None
) -> None:
    """:func:`nightlake.files.atomic_replace`, keeping the mode of the file it replaces and
    running ``before_replace`` (the journal append) between the write and the replace. The
    temp file is flushed to disk first: a write whose bytes may not be on disk raises before
    it is journaled."""
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = None  # a new file: open() gives it 0o666 & ~umask
    with atomic_replace(path) as tmp:
        with open(tmp, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()


def write_db(
    path: str | os.PathLike,
    records: np.ndarray,
    filters: dict[int, str],
    *,
    layout: str = "LP64",
    byteorder: str = "little",
    overlaps: str = "allow",
    _journal: tuple[dict, tuple[str, int] | None] | None = None,
) -> DetRegDB:
    """Write a database atomically (temp + fsync + os.replace + fsync dir); no lock.

    The writers below (:func:`add_records`, :func:`register`, :func:`delete_records`,
    :func:`init_db`) lock and journal around this; tests use it directly to build files.
    ``_journal`` is (entry, (sha256, nrecord) of the file being replaced, or None).
    """
    path = Path(path)
    records = np.asarray(records)
    if records.dtype != RECORD_DTYPE:
        if records.dtype.names != FIELDS:
            raise ValueError(f"records need the fields {FIELDS}")
        records = records.astype(RECORD_DTYPE)
    date = _journal[0]["time"][:19] if _journal is not None else None
    try:
        content = encode_db(
            records, filters, layout=layout, byteorder=byteorder, overlaps=overlaps, date=date
        )
    except ValueError as exc:
        raise InputError(path, f"cannot write: {exc}") from None
    before = None
    if _journal is not None:
        entry, found = _journal
        entry = dict(entry, nrecord=len(records), sha256=hashlib.sha256(content).hexdigest())

        def before() -> None:  # temp file written and fsynced; the replace comes after
            base = {k: entry[k] for k in ("time", "user", "host", "pid", "db")}
            prev = settle(path, found, base)
            append_line(path, encode_line(entry, prev))

    _atomic_replace(path, content, before)
    return _decode(path, content, os.stat(path))


def read_journal(db_path: str | os.PathLike) -> list[dict]:
    """Every journal entry of a database, oldest first ([] if there is no journal).

    A torn last line (a writer killed while appending; its change never happened) is left out;
    :func:`~nightlake.detrends.detreg.journal.load_journal` shows it, and ``detregister check``
    reports it.
    """
    return load_journal(real_path(db_path)).entries


def _journal_entry(db_path: Path, action: str, records: Sequence[dict], **extra) -> dict:
    try:
        user = getpass.getuser()
    except Exception:  # no login name (containers): fall back to the uid
        user = str(os.getuid())
    return {
        "time": datetime.now(UTC).isoformat(timespec="microseconds"),
        "action": action,
        "user": user,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "db": str(db_path.absolute()),
        **extra,
        "records": list(records),
    }


@contextmanager
def locked(
    db_path: str | os.PathLike, lock_timeout: float = DEFAULT_LOCK_TIMEOUT
) -> Iterator[None]:
    """Hold the exclusive writer lock ``<db>.lock``; LockTimeout after ``lock_timeout`` s."""
    from filelock import FileLock, Timeout

    lockfile = lock_path(real_path(db_path))
    lock = FileLock(str(lockfile), timeout=lock_wait(lock_timeout))
    try:
        lock.acquire()
    except Timeout:
        raise LockTimeout(
            f"database locked by another process: {lockfile} "
            f"(waited {lock_timeout:g} s; retry, or raise --lock-timeout)"
        ) from None
    try:
        # A dead writer's temp file is swept when the next one is written (temp_beside): only
        # this database's, and only when its owner is gone. (A glob here once removed the
        # live temp of another database whose name begins with this one's.)
        yield
    finally:
        lock.release()


def init_db(
    path: str | os.PathLike,
    *,
    layout: str = "LP64",
    byteorder: str = "little",
    forbid_overlaps: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> DetRegDB:
    """Create an empty database; refuse to overwrite an existing file.

    ``forbid_overlaps`` records the policy in the header (OVERLAPS card): from then on every
    add refuses a record whose range overlaps one of its class.
    """
    path = real_path(path)
    with locked(path, lock_timeout):
        if path.exists():
            raise InputError(
                path,
                "already exists; refusing to overwrite a database (delete it first if you mean it)",
            )
        overlaps = "forbid" if forbid_overlaps else "allow"
        extra = {"overlaps": overlaps} if forbid_overlaps else {}
        entry = _journal_entry(path, "init", [], layout=layout, byteorder=byteorder, **extra)
        return write_db(
            path,
            np.zeros(0, RECORD_DTYPE),
            {},
            layout=layout,
            byteorder=byteorder,
            overlaps=overlaps,
            _journal=(entry, None),
        )


def _merge_filters(db: DetRegDB, filters: dict[int, str]) -> dict[int, str]:
    merged = dict(db.filters)
    for code, name in filters.items():
        if code in merged and merged[code] != name:
            raise InputError(
                db.path, f"filter code {code} is {merged[code]!r} in the database, not {name!r}"
            )
        merged[code] = name
    return merged


def add_records(
    db_path: str | os.PathLike,
    new_records: np.ndarray,
    *,
    filters: dict[int, str] | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> DetRegDB:
    """Append records (filter codes already assigned; ``filters`` adds table entries)."""

    def build(db: DetRegDB) -> tuple[np.ndarray, dict[int, str]]:
        return np.asarray(new_records).astype(RECORD_DTYPE), _merge_filters(db, filters or {})

    return _append(db_path, build, lock_timeout)


def _append(
    db_path: str | os.PathLike,
    build: Callable[[DetRegDB], tuple[np.ndarray, dict[int, str]]],
    lock_timeout: float,
) -> DetRegDB:
    """Append in one lock and one journaled rewrite: ``build(db)`` gives the new records and
    the whole filter table (the database's codes and any new ones)."""
    db_path = _existing(db_path)
    with locked(db_path, lock_timeout):
        db = read_db(db_path)
        new, filters = build(db)
        added = {c: n for c, n in filters.items() if c not in db.filters}
        return _commit(
            db,
            np.concatenate([db.records, new]),
            filters,
            "add",
            [record_dict(r, filters) for r in new],
            filters_added=added,
        )


def _commit(
    db: DetRegDB,
    records: np.ndarray,
    filters: dict[int, str],
    action: str,
    journal_records: list[dict],
    **extra,
) -> DetRegDB:
    if action == "add":
        check_add(db, records, filters)
    else:
        try:
            check_writable(records, db.layout)
        except ValueError as exc:
            raise InputError(db.path, f"cannot write: {exc}") from None
    entry = _journal_entry(
        db.path,
        action,
        journal_records,
        **{
            k: ({str(c): n for c, n in v.items()} if isinstance(v, dict) else v)
            for k, v in extra.items()
        },
    )
    found = (db.fingerprint["sha256"], len(db))
    return write_db(
        db.path,
        records,
        filters,
        layout=db.layout,
        byteorder=db.byteorder,
        overlaps=db.overlaps,
        _journal=(entry, found),
    )


def _refuse_overlaps(db: DetRegDB, records: np.ndarray, filters: dict[int, str]) -> None:
    """InputError naming the first new record that overlaps a record of its class.

    The class is what resolution keeps apart: type and CCD, and the filter code for flats
    and fringes or the exposure time for darks (bias and mask: any filter). Empty ranges
    cover no instant and overlap nothing.
    """
    old = len(db)
    kinds = records["type"].astype(np.int64)
    by_filter = np.isin(kinds, [TYPE_CODES["flat"], TYPE_CODES["fringe"], TYPE_CODES["dark"]])
    cls = np.where(by_filter, records["filter"].astype(np.int64), 0)
    live = records["tstop"] > records["tstart"]
    for i in range(old, len(records)):
        if not live[i]:
            continue
        hit = (
            live[:i]
            & (kinds[:i] == kinds[i])
            & (records["ccd"][:i] == records["ccd"][i])
            & (cls[:i] == cls[i])
            & (records["tstart"][:i] < records["tstop"][i])
            & (records["tstart"][i] < records["tstop"][:i])
        )
        if hit.any():
            j = int(np.flatnonzero(hit)[0])
            which = f"record {j}" if j < old else f"record {j - old + 1} of this add"
            raise InputError(
                db.path,
                f"{_described(records[i])} overlaps {which} ({_described(records[j])}); "
                "this database forbids overlaps (detregister init --forbid-overlaps)",
            )


def _described(rec: np.void) -> str:
    """A record in one phrase for messages: filename, type, CCD, validity in UTC."""
    from nightlake.detrends.detreg.record import iso

    name = bytes(rec["filename"]).decode("utf-8", "backslashreplace")
    return (
        f"{name}: {TYPE_NAMES[int(rec['type'])]} ccd {int(rec['ccd'])} "
        f"[{iso(int(rec['tstart']))}, {iso(int(rec['tstop']))})"
    )


def _existing(db_path: str | os.PathLike) -> Path:
    """The real path of a database that must exist (checked before a lock file is made)."""
    path = real_path(db_path)
    if not path.exists():
        raise InputError(db_path, "no such database (create one with `detregister init`)")
    return path


# --------------------------------------------------------------------------------------------
# Registration by names (what `detregister add` does)


@dataclass(frozen=True)
class DetRegEntry:
    """One detrend to register, with names instead of codes (filter codes come under lock).

    ``filter`` is the filter name (flat, fringe; bias and mask: None = any);
    ``exptime`` the dark's exposure time in seconds (stored in the filter field).
    ``source`` names where the values came from, for error messages.
    """

    filename: str
    type: str
    ccd: int
    tstart: int
    tstop: int
    treg: int
    filter: str | None = None
    exptime: int | None = None
    sigma: float = float("nan")
    clipsigma: float = float("nan")
    flag1: int = 0
    flag2: int = 0
    source: str = ""


def _assign_filter_codes(db: DetRegDB, entries: Sequence[DetRegEntry]) -> dict[int, str]:
    filters = dict(db.filters)
    by_name = {name: code for code, name in sorted(filters.items(), reverse=True)}
    for entry in entries:
        if entry.type == "dark" or entry.filter is None or entry.filter in by_name:
            continue
        if len(entry.filter.replace("'", "''")) > max_filter_name_length():
            raise InputError(
                entry.source or entry.filename,
                f"field FILTER: name longer than a FITS card holds "
                f"({max_filter_name_length()} characters): {entry.filter!r}",
            )
        code = max(filters, default=0) + 1
        if code > MAX_FILTER_CODE:
            raise InputError(db.path, f"filter table full (codes up to {MAX_FILTER_CODE})")
        filters[code] = entry.filter
        by_name[entry.filter] = code
    return filters


def entries_to_records(entries: Sequence[DetRegEntry], filters: dict[int, str]) -> np.ndarray:
    """Entries -> records, filter names looked up in ``filters`` (each must be there)."""
    by_name = {name: code for code, name in sorted(filters.items(), reverse=True)}
    rows = []
    for e in entries:
        if e.type == "dark":
            code = int(e.exptime) if e.exptime is not None else ANY_FILTER
        elif e.filter is None:
            code = ANY_FILTER
        else:
            code = by_name[e.filter]
        rows.append(
            {
                "tstart": e.tstart,
                "tstop": e.tstop,
                "treg": e.treg,
                "sigma": e.sigma,
                "clipsigma": e.clipsigma,
                "type": e.type,
                "filter": code,
                "ccd": e.ccd,
                "filename": e.filename,
                "flag1": e.flag1,
                "flag2": e.flag2,
            }
        )
    return make_records(rows)


def register(
    db_path: str | os.PathLike,
    entries: Sequence[DetRegEntry],
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> DetRegDB:
    """Append entries in one lock and one rewrite; new filter names get the next codes."""

    def build(db: DetRegDB) -> tuple[np.ndarray, dict[int, str]]:
        after, new = with_entries(db, entries)
        return new, after.filters

    return _append(db_path, build, lock_timeout)


def with_entries(db: DetRegDB, entries: Sequence[DetRegEntry]) -> tuple[DetRegDB, np.ndarray]:
    """The database with ``entries`` appended, in memory (what :func:`register` writes; new
    filter names get the next codes), and the new records. Nothing is written."""
    filters = _assign_filter_codes(db, entries)
    new = entries_to_records(entries, filters)
    records = np.concatenate([db.records, new])
    after = DetRegDB(db.path, db.layout, db.byteorder, filters, records, overlaps=db.overlaps)
    return after, new


def without(db: DetRegDB, mask: np.ndarray) -> DetRegDB:
    """The database without the records ``mask`` selects, in memory; nothing is written."""
    return DetRegDB(
        db.path, db.layout, db.byteorder, db.filters, db.records[~mask], overlaps=db.overlaps
    )


def check_add(db: DetRegDB, records: np.ndarray, filters: dict[int, str]) -> None:
    """InputError when ``records`` (those of ``db`` with new ones appended) cannot be written:
    a record the layout cannot hold, or an overlap in a database that forbids them."""
    try:
        check_writable(records, db.layout)
    except ValueError as exc:
        raise InputError(db.path, f"cannot write: {exc}") from None
    if db.overlaps == "forbid":
        _refuse_overlaps(db, records, filters)


# --------------------------------------------------------------------------------------------
# Deleting


@dataclass(frozen=True)
class Selection:
    """Which records to delete or list; None = any. Times compare for equality."""

    filename: str | None = None
    type: str | None = None
    ccd: int | None = None
    filter: str | None = None
    exptime: int | None = None
    tstart: int | None = None
    tstop: int | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f) is None for f in self.__dataclass_fields__)

    def mask(self, db: DetRegDB) -> np.ndarray:
        recs = db.records
        keep = np.ones(len(recs), dtype=bool)
        if self.filename is not None:
            wanted = {self.filename, os.path.abspath(self.filename)}
            names = np.array(
                [w.encode("utf-8", "surrogateescape") for w in wanted], dtype=recs.dtype["filename"]
            )
            keep &= np.isin(recs["filename"], names)
        if self.type is not None:
            keep &= recs["type"] == TYPE_CODES[self.type]
        if self.ccd is not None:
            keep &= recs["ccd"] == self.ccd
        if self.filter is not None:
            code = db.filter_code(self.filter)
            keep &= (
                (recs["filter"] == code) & (recs["type"] != TYPE_CODES["dark"])
                if code is not None
                else False
            )
        if self.exptime is not None:
            keep &= (recs["filter"] == self.exptime) & (recs["type"] == TYPE_CODES["dark"])
        if self.tstart is not None:
            keep &= recs["tstart"] == np.uint64(self.tstart)
        if self.tstop is not None:
            keep &= recs["tstop"] == np.uint64(self.tstop)
        return keep


def delete_records(
    db_path: str | os.PathLike,
    selection: Selection | np.ndarray,
    *,
    dry_run: bool = False,
    allow_all: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> tuple[DetRegDB, np.ndarray, np.ndarray]:
    """Remove the selected records; return (database after, removed records, their indices).

    ``selection`` is a :class:`Selection` or a boolean mask over the records read under the
    lock. An empty Selection is refused unless ``allow_all``. ``dry_run`` reads without the
    lock and writes nothing.
    """
    from nightlake.errors import UsageError

    db_path = Path(db_path)
    if isinstance(selection, Selection) and selection.is_empty() and not allow_all:
        raise UsageError(
            f"{db_path}: refusing to delete every record: select with "
            "--filename or --type (with --ccd/--filter/--tstart/--tstop), "
            "or pass --all"
        )

    def pick(db: DetRegDB) -> np.ndarray:
        if isinstance(selection, Selection):
            return selection.mask(db)
        mask = np.asarray(selection, dtype=bool)
        if mask.shape != (len(db),):
            raise ValueError(f"mask has shape {mask.shape}, database has {len(db)} records")
        return mask

    if not dry_run:
        db_path = _existing(db_path)
    if dry_run:
        db = read_db(db_path)
        mask = pick(db)
        return db, db.records[mask], np.flatnonzero(mask)
    with locked(db_path, lock_timeout):
        db = read_db(db_path)
        mask = pick(db)
        removed, indices = db.records[mask], np.flatnonzero(mask)
        if not mask.any():
            return db, removed, indices
        journal = [dict(record_dict(r, db.filters), index=int(i)) for r, i in zip(removed, indices)]
        return (
            _commit(db, without(db, mask).records, db.filters, "delete", journal),
            removed,
            indices,
        )


__all__ = [
    "DetRegDB",
    "DetRegEntry",
    "Selection",
    "read_db",
    "write_db",
    "add_records",
    "register",
    "with_entries",
    "without",
    "check_add",
    "delete_records",
    "init_db",
    "read_journal",
    "locked",
    "encode_db",
    "real_path",
    "OPEN_ENDED",
]
