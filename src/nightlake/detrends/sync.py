"""The write path of the detrend mirror: ``nightlake sync``, the lake↔database tie, refresh.

Reads never come here (:mod:`nightlake.detrends.mirror` is the read side). A sync writes a complete
new generation directory, fsyncs it, then replaces the ``LAKE/detrends`` symlink, so a reader
sees the old mirror or the new one, never a mix; the previous generation is kept (a
connection opened just before the swap may still be reading it), older ones are removed.

A sync also ties the lake to its database, in both places a writer looks::

    LAKE/nightlake.json      "detreg_db": "/real/path/detrend.db"   (which database the lake
                                                                    follows; under the lake lock)
    /real/path/detrend.db.lakes
                             {"format_version": 1, "lakes": ["/real/path/LAKE", …]}
                             (which lakes follow the database; written atomically under the
                             database's own writer lock)

``detregister add/delete`` call :func:`refresh_tied` after their write: every lake listed
beside the database whose settings still name that database is re-synced under its lock. A
refresh that fails is a warning, never a failed write: the mirror then stays stale and says so
when ``detrends`` is read.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nightlake.detrends import mirror
from nightlake.errors import LakeError, NightlakeError
from nightlake.files import fsync_path, sweep_directory, temp_path_for
from nightlake.lake import LakeDirectory, atomic_write_bytes, write_parquet_atomic

if TYPE_CHECKING:
    import pyarrow as pa

    from nightlake.detrends.detreg import DetRegDB

#: The key of the lake settings (nightlake.json) naming the database the lake follows.
TIE_KEY = "detreg_db"
#: Beside the database: the lakes tied to it.
LAKES_SUFFIX = ".lakes"
LAKES_FORMAT_VERSION = 1


@dataclass(frozen=True)
class SyncResult:
    db_path: str
    nrecord: int
    counts: dict[str, int]  # records per type name
    directory: Path
    skipped: bool  # the mirror was already up to date
    warning: str | None = None  # the tie could not be recorded beside the database


@dataclass(frozen=True)
class Refresh:
    """What :func:`refresh_tied` did for one lake: ``result``, or a one-line ``warning``."""

    lake: Path
    result: SyncResult | None
    warning: str | None


def real_db_path(db_path: str | os.PathLike[str]) -> str:
    """The database's absolute path with symlinks resolved: one spelling per database."""
    return os.path.realpath(os.fspath(db_path))


def lakes_file(db_path: str | os.PathLike[str]) -> Path:
    return Path(real_db_path(db_path) + LAKES_SUFFIX)


# -- the mirror's table ---------------------------------------------------------------------


def records_table(db: DetRegDB) -> pa.Table:
    """The database's records as the mirror's Arrow table (plus a ``type`` name column).

    Built from :meth:`DetRegDB.to_arrow` (one compiled pass over the file's records). Its
    ``filename`` is the name when valid UTF-8, else the ``backslashreplace`` escape;
    ``filename_bytes`` keeps the exact bytes (cut at the first NUL, as C reads them).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from nightlake.detrends.detreg import OPEN_ENDED, TYPE_CODES
    from nightlake.detrends.detreg.record import type_name

    columns = db.to_arrow()
    n = columns.num_rows
    tstart = columns.column("tstart").to_numpy().astype(np.uint64)
    tstop = columns.column("tstop").to_numpy().astype(np.uint64)
    treg = columns.column("treg").to_numpy().astype(np.uint64)
    types = columns.column("type").to_numpy().astype(np.int32)
    fcode = columns.column("filter").to_numpy().astype(np.int32)
    is_dark = types == TYPE_CODES["dark"]

    def timestamps(seconds: np.ndarray, *, null_beyond: bool) -> pa.Array:
        beyond = seconds > mirror.MAX_TIMESTAMP_S
        micros = np.minimum(seconds, mirror.MAX_TIMESTAMP_S).astype(np.int64) * 1_000_000
        mask = (beyond | (seconds == OPEN_ENDED)) if null_beyond else None
        return pa.array(micros, type=pa.timestamp("us"), mask=mask)

    codes, inverse = np.unique(fcode, return_inverse=True)
    filter_names = np.array([db.filters.get(int(c)) for c in codes] + [None], dtype=object)[inverse]
    filter_names[is_dark] = None
    tcodes, tinverse = np.unique(types, return_inverse=True)
    type_names = np.array([type_name(c) for c in tcodes] + [None], dtype=object)[tinverse]

    def column(name: str, kind: pa.DataType) -> pa.Array:
        return pc.cast(columns.column(name), kind)

    return pa.table(
        {
            "record_index": pa.array(np.arange(n, dtype=np.int64)),
            "type": pa.array(type_names.tolist(), type=pa.string()),
            "type_code": pa.array(types, type=pa.int32()),
            "filter": pa.array(filter_names.tolist(), type=pa.string()),
            "filter_code": pa.array(fcode, type=pa.int32()),
            "dark_exptime": pa.array(fcode, type=pa.int32(), mask=~is_dark),
            "ccd": column("ccd", pa.int32()),
            "tstart": timestamps(tstart, null_beyond=False),
            "tstop": timestamps(tstop, null_beyond=True),
            "treg": timestamps(treg, null_beyond=False),
            "tstart_s": pa.array(tstart, type=pa.uint64()),
            "tstop_s": pa.array(tstop, type=pa.uint64()),
            "treg_s": pa.array(treg, type=pa.uint64()),
            "sigma": column("sigma", pa.float32()),
            "clipsigma": column("clipsigma", pa.float32()),
            "filename": column("filename", pa.string()),
            "filename_bytes": pc.cast(db.filenames_arrow, pa.binary()),
            "flag1": column("flag1", pa.int8()),
            "flag2": column("flag2", pa.int8()),
        }
    )


# -- sync -----------------------------------------------------------------------------------


def tied_db(lake: LakeDirectory) -> str | None:
    """The database the lake's settings say it follows (None for a lake never tied)."""
    value = lake.read_manifest().get(TIE_KEY) if lake.manifest_path.exists() else None
    return value if isinstance(value, str) and value else None


def sync(
    lake: LakeDirectory,
    db_path: str | os.PathLike[str] | None = None,
    *,
    lock_timeout: float = 30.0,
    force: bool = False,
) -> SyncResult:
    """Write the database into ``LAKE/detrends`` (under the lake lock) unless it is up to
    date, and tie the lake to it.

    ``db_path`` defaults to the database the lake is tied to, then the one its mirror was
    made from, then ``$NIGHTLAKE_DETREG``.
    """
    db_file = mirror.default_db(db_path) if db_path not in (None, "") else None
    if db_file is None and lake.path.is_dir():
        try:
            recorded = tied_db(lake) or (mirror.manifest(lake) or {}).get("db_path")
        except LakeError:
            recorded = None
        db_file = Path(recorded) if isinstance(recorded, str) else None
    if db_file is None:
        db_file = mirror.default_db(None)
    if db_file is None:
        raise NightlakeError(
            f"no detrend database given for {lake.path}: pass --db DB or set {mirror.DB_ENV}"
        )
    with lake.locked(lock_timeout):
        result = _sync_locked(lake, db_file, force=force)
        _tie_lake(lake, result.db_path)
    warning = _list_lake(lake, result.db_path, lock_timeout)
    return result if warning is None else _with_warning(result, warning)


def _with_warning(result: SyncResult, warning: str) -> SyncResult:
    from dataclasses import replace

    return replace(result, warning=warning)


def _sync_locked(lake: LakeDirectory, db_file: Path, *, force: bool) -> SyncResult:
    import pyarrow as pa
    import pyarrow.compute as pc

    from nightlake import __version__
    from nightlake.detrends.detreg import read_db

    db_abs = real_db_path(db_file)
    sweep_directory(lake.path)  # a killed sync's unfinished generation and link
    if not force and mirror.freshness(lake).state == "fresh":
        info = mirror.manifest(lake) or {}
        # a manifest without the stamps a stat compares (older nightlake) is rewritten, or
        # every connection would hash the database to learn that it is fresh
        if info.get("db_path") == db_abs and {"inode", "journal_size"} <= info.keys():
            return SyncResult(
                db_abs, info["nrecord"], info.get("counts", {}), lake.detrends_dir, True
            )

    journal = mirror.journal_size(db_abs)  # before the read: a write in between reads stale
    db = read_db(db_abs)
    table = records_table(db)
    fp = dict(db.fingerprint)
    counts: dict[str, int] = {}
    meta = {
        "format_version": mirror.FORMAT_VERSION,
        "db_path": db_abs,
        "size": int(fp["size"]),
        "mtime_ns": int(fp["mtime_ns"]),
        "inode": int(fp["inode"]),
        "journal_size": journal,
        "sha256": fp["sha256"],
        "nrecord": len(table),
        "layout": getattr(db, "layout", None),
        "byteorder": getattr(db, "byteorder", None),
        "filters": {str(k): v for k, v in sorted(db.filters.items())},
        "nightlake_version": __version__,
        "synced_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    kv = {mirror.METADATA_KEY: json.dumps(meta).encode()}

    # Written under a temp name (which no generation glob matches), renamed when complete.
    generation = lake.path / f"{mirror.GENERATION_PREFIX}{time.time_ns()}"
    building = temp_path_for(generation)
    building.mkdir(parents=True)
    try:
        # The shared writers (temp file, fsync, rename, fsync the directory): the renames are
        # not needed inside a generation nobody sees yet, but the durability and the
        # statistics rule (no min/max on a float column holding NaN) are.
        type_column = table.column("type")
        data = table.drop_columns(["type"])
        for name in sorted(set(type_column.to_pylist())):
            part = data.filter(pc.equal(type_column, name))
            part = part.sort_by(
                [("ccd", "ascending"), ("filter_code", "ascending"), ("tstart_s", "ascending")]
            )
            counts[name] = len(part)
            target = building / f"type={name}" / mirror.DATA_FILE
            write_parquet_atomic(part.replace_schema_metadata(kv), target)
        filters = pa.table(
            {
                "code": pa.array(sorted(db.filters), type=pa.int32()),
                "name": pa.array([db.filters[c] for c in sorted(db.filters)], type=pa.string()),
            }
        ).replace_schema_metadata(kv)
        write_parquet_atomic(filters, building / mirror.FILTERS_FILE)
        meta["counts"] = counts
        # Written last, so its directory fsync also records the type=… directories.
        atomic_write_bytes(building / mirror.MANIFEST, (json.dumps(meta, indent=1) + "\n").encode())
        os.rename(building, generation)
        _swap_link(lake, generation)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(generation, ignore_errors=True)
        raise
    _remove_old_generations(lake, keep=generation.name)
    return SyncResult(db_abs, len(table), counts, lake.detrends_dir, False)


def _swap_link(lake: LakeDirectory, generation: Path) -> None:
    link = lake.detrends_dir
    tmp = temp_path_for(link)
    os.symlink(generation.name, tmp)
    if link.is_dir() and not link.is_symlink():
        # A real directory (a copied lake): move it aside so the symlink can take its place.
        link.rename(lake.path / f"{mirror.GENERATION_PREFIX}moved-{time.time_ns()}")
    os.replace(tmp, link)
    fsync_path(lake.path)


def _remove_old_generations(lake: LakeDirectory, *, keep: str) -> None:
    generations = sorted(p for p in lake.path.glob(f"{mirror.GENERATION_PREFIX}*") if p.is_dir())
    stale = [p for p in generations if p.name != keep][:-1]  # keep the previous one too
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)


# -- the tie --------------------------------------------------------------------------------


def _tie_lake(lake: LakeDirectory, db_abs: str) -> None:
    """Record in the lake's settings which database it follows (caller holds the lake lock).

    A new key in format_version 1 settings: older nightlake ignores it and keeps it when it
    rewrites the settings (convert merges into what it read).
    """
    settings = lake.read_manifest()
    if settings.get(TIE_KEY) != db_abs:
        lake.write_manifest({**settings, TIE_KEY: db_abs})


def tied_lakes(db_path: str | os.PathLike[str]) -> list[str]:
    """The lakes listed beside the database (``<db>.lakes``); [] when there is no list."""
    path = lakes_file(db_path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise LakeError(
            f"{path}: unreadable list of tied lakes ({exc}); run nightlake sync "
            "--db DB --lake LAKE for each lake to rewrite it"
        ) from exc
    lakes = data.get("lakes") if isinstance(data, dict) else None
    if not isinstance(lakes, list) or not all(isinstance(p, str) for p in lakes):
        raise LakeError(
            f"{path}: not a list of tied lakes; run nightlake sync --db DB "
            "--lake LAKE for each lake to rewrite it"
        )
    return lakes


def _list_lake(lake: LakeDirectory, db_abs: str, lock_timeout: float) -> str | None:
    """Add the lake to ``<db>.lakes`` (under the database's writer lock, so two syncs of
    different lakes do not lose each other). Returns a warning when that cannot be done: the
    lake then follows the database only through ``nightlake sync``."""
    from nightlake.detrends.detreg.db import locked

    lake_abs = os.path.realpath(lake.path)
    try:
        if lake_abs in tied_lakes(db_abs):
            return None
        with locked(db_abs, lock_timeout):
            lakes = [p for p in tied_lakes(db_abs) if p != lake_abs] + [lake_abs]
            body = {"format_version": LAKES_FORMAT_VERSION, "lakes": lakes}
            atomic_write_bytes(lakes_file(db_abs), (json.dumps(body, indent=1) + "\n").encode())
    except (NightlakeError, OSError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return (
            f"{lakes_file(db_abs)}: cannot record the lake {lake_abs} beside the database "
            f"({why}); detregister add/delete will not refresh its mirror: run nightlake "
            "sync after each change"
        )
    return None


def refresh_tied(db_path: str | os.PathLike[str], *, lock_timeout: float = 30.0) -> list[Refresh]:
    """Re-sync the mirror of every lake tied to the database (after a detregister write).

    A lake listed beside the database but now tied to another one (or gone) is left alone.
    Nothing raises: each failure comes back as a one-line warning for that lake.
    """
    db_abs = real_db_path(db_path)
    try:
        lakes = tied_lakes(db_abs)
    except LakeError as exc:
        return [Refresh(Path(lakes_file(db_abs)), None, str(exc))]
    done = []
    for path in lakes:
        lake = LakeDirectory(path)
        try:
            if not lake.path.is_dir() or tied_db(lake) != db_abs:
                continue
            done.append(Refresh(lake.path, _refresh_one(lake, db_abs, lock_timeout), None))
        except (NightlakeError, OSError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            done.append(
                Refresh(
                    lake.path,
                    None,
                    (
                        f"{lake.path}: detrend mirror not refreshed ({why}); it stays stale until: "
                        f"nightlake sync --lake {lake.path}"
                    ),
                )
            )
    return done


def _refresh_one(lake: LakeDirectory, db_abs: str, lock_timeout: float) -> SyncResult:
    with lake.locked(lock_timeout):
        if tied_db(lake) != db_abs:  # re-tied while we waited for the lock
            info = mirror.manifest(lake) or {}
            return SyncResult(db_abs, info.get("nrecord", 0), {}, lake.detrends_dir, True)
        return _sync_locked(lake, Path(db_abs), force=False)


def non_utf8(path: str | os.PathLike[str]) -> bool:
    """Whether a path's bytes are not valid UTF-8 (stored exactly, shown escaped)."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def shown(path: str | os.PathLike[str]) -> str:
    """A path as the mirror's ``filename`` shows it: escaped where its bytes are not UTF-8."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
