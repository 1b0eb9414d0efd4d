"""The Parquet mirror of the DetReg database in the lake, and the check that keeps it fresh.

The database file is the write authority; the mirror is derived from it by ``nightlake sync``
and re-derived whenever it is found stale. On disk::

    LAKE/
      detrends -> .detrends-<ns>            symlink, swapped atomically by each sync
      .detrends-<ns>/
        _mirror.json                        the database's fingerprint (path, size, mtime,
                                            sha256), NRECORD, nightlake version, sync time
        filters.parquet                     the header's filter table (view detrend_filters)
        type=flat/detrends.parquet          one row per record, Hive-partitioned by type
        type=bias/detrends.parquet          (kv metadata: the same fingerprint)
        …

A sync writes a complete new generation directory, fsyncs it, then replaces the symlink, so a
reader sees the old mirror or the new one, never a mix. The previous generation is kept (a
connection opened just before the swap may still be reading it); older ones are removed.

Opening the lake (:func:`attach`, called from ``Lake.connect``) compares the recorded
fingerprint with the database file: size and mtime first, the content hash only when those
differ. A stale mirror is re-synced under the lake lock; when that cannot be done (read-only
lake, database gone) the ``detrends`` view is replaced by one that fails with the reason, so
queries that do not touch detrends still work and those that do never see stale rows.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nightlake.errors import LakeError, NightlakeError
from nightlake.files import compare_fingerprint, fsync_path, sweep_directory, temp_path_for
from nightlake.lake import _sql_string

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from nightlake.lake import Lake

DB_ENV = "NIGHTLAKE_DETREG"  # as detregister
MANIFEST = "_mirror.json"
FILTERS_FILE = "filters.parquet"
DATA_FILE = "detrends.parquet"
GENERATION_PREFIX = ".detrends-"
METADATA_KEY = b"nightlake.detreg"
#: The largest whole second a TIMESTAMP column shows (9999-12-31T23:59:59Z); later tstops are
#: shown as NULL (never ends, as for open-ended), later tstart/treg are clamped to it. The raw
#: integers (``*_s`` columns) are always exact.
MAX_TIMESTAMP_S = 253402300799

#: The columns of the ``detrends`` view, in order (``type`` comes from the partition path).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("record_index", "BIGINT"),
    ("type", "VARCHAR"),
    ("type_code", "INTEGER"),
    ("filter", "VARCHAR"),
    ("filter_code", "INTEGER"),
    ("dark_exptime", "INTEGER"),
    ("ccd", "INTEGER"),
    ("tstart", "TIMESTAMP"),
    ("tstop", "TIMESTAMP"),
    ("treg", "TIMESTAMP"),
    ("tstart_s", "UBIGINT"),
    ("tstop_s", "UBIGINT"),
    ("treg_s", "UBIGINT"),
    ("sigma", "FLOAT"),
    ("clipsigma", "FLOAT"),
    ("filename", "VARCHAR"),
    ("flag1", "TINYINT"),
    ("flag2", "TINYINT"),
)
FILTER_COLUMNS = (("code", "INTEGER"), ("name", "VARCHAR"))


def default_db(db: str | os.PathLike[str] | None) -> Path | None:
    """``--db`` if given, else ``$NIGHTLAKE_DETREG``, else None."""
    if db is not None and str(db) != "":
        return Path(db)
    env = os.environ.get(DB_ENV)
    return Path(env) if env else None


@dataclass(frozen=True)
class SyncResult:
    db_path: str
    nrecord: int
    counts: dict[str, int]  # records per type name
    directory: Path
    skipped: bool  # the mirror was already up to date


# -- fingerprints ---------------------------------------------------------------------------


def manifest(lake: "Lake") -> dict[str, Any] | None:
    """The current mirror's manifest, or None when the lake has no mirror."""
    path = lake.detrends_dir / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LakeError(
            f"{path}: unreadable detrend mirror manifest ({exc}); run nightlake sync"
        ) from exc


@dataclass(frozen=True)
class Freshness:
    """Whether the mirror matches its database: ``state`` and, unless fresh, a message."""

    state: str  # 'fresh', 'stale' (re-sync can fix it), 'no-mirror', 'no-database'
    message: str | None = None


def freshness(lake: "Lake") -> Freshness:
    """Compare the mirror's fingerprint with its database (stat first, SHA-256 if needed)."""
    info = manifest(lake)
    if info is None:
        return Freshness(
            "no-mirror",
            f"no detrend mirror in {lake.path}; run nightlake sync --db DB --lake {lake.path}",
        )
    db = Path(info["db_path"])
    state, _ = compare_fingerprint({**info, "path": db})
    if state == "missing":
        return Freshness(
            "no-database",
            f"detrend database {db} (mirrored in "
            f"{lake.detrends_dir}) is missing; run nightlake sync "
            f"--db DB --lake {lake.path}",
        )
    if state == "ok":
        return Freshness("fresh")  # unchanged, or touched without a change
    return Freshness(
        "stale", f"detrend mirror is stale ({db} changed since the last sync); run nightlake sync"
    )


def staleness(lake: "Lake") -> str | None:
    """Why the mirror cannot be used as it is (a sentence), or None when it is fresh."""
    return freshness(lake).message


# -- sync -----------------------------------------------------------------------------------


def records_table(db) -> "pa.Table":
    """The database's records as the mirror's Arrow table (plus a ``type`` name column)."""
    import numpy as np
    import pyarrow as pa

    from nightlake.detreg import OPEN_ENDED, TYPE_NAMES

    rec = db.records
    n = len(rec)
    tstart = np.asarray(rec["tstart"], dtype=np.uint64)
    tstop = np.asarray(rec["tstop"], dtype=np.uint64)
    treg = np.asarray(rec["treg"], dtype=np.uint64)
    types = np.asarray(rec["type"], dtype=np.int32)
    fcode = np.asarray(rec["filter"], dtype=np.int32)
    is_dark = types == 2

    def timestamps(seconds: np.ndarray, *, null_beyond: bool) -> pa.Array:
        beyond = seconds > MAX_TIMESTAMP_S
        micros = np.minimum(seconds, MAX_TIMESTAMP_S).astype(np.int64) * 1_000_000
        mask = (beyond | (seconds == OPEN_ENDED)) if null_beyond else None
        return pa.array(micros, type=pa.timestamp("us"), mask=mask)

    codes, inverse = np.unique(fcode, return_inverse=True)
    filter_names = np.array([db.filters.get(int(c)) for c in codes] + [None], dtype=object)[inverse]
    filter_names[is_dark] = None
    tcodes, tinverse = np.unique(types, return_inverse=True)
    type_names = np.array(
        [TYPE_NAMES.get(int(c), f"type{int(c)}") for c in tcodes] + [None], dtype=object
    )[tinverse]
    # C strings end at the first NUL; whatever follows it is not part of the name.
    filenames = [
        f.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        for f in np.asarray(rec["filename"]).tolist()
    ]
    return pa.table(
        {
            "record_index": pa.array(np.arange(n, dtype=np.int64)),
            "type": pa.array(type_names.tolist(), type=pa.string()),
            "type_code": pa.array(types, type=pa.int32()),
            "filter": pa.array(filter_names.tolist(), type=pa.string()),
            "filter_code": pa.array(fcode, type=pa.int32()),
            "dark_exptime": pa.array(fcode, type=pa.int32(), mask=~is_dark),
            "ccd": pa.array(np.asarray(rec["ccd"], dtype=np.int32)),
            "tstart": timestamps(tstart, null_beyond=False),
            "tstop": timestamps(tstop, null_beyond=True),
            "treg": timestamps(treg, null_beyond=False),
            "tstart_s": pa.array(tstart, type=pa.uint64()),
            "tstop_s": pa.array(tstop, type=pa.uint64()),
            "treg_s": pa.array(treg, type=pa.uint64()),
            "sigma": pa.array(np.asarray(rec["sigma"], dtype=np.float32)),
            "clipsigma": pa.array(np.asarray(rec["clipsigma"], dtype=np.float32)),
            "filename": pa.array(filenames, type=pa.string()),
            "flag1": pa.array(np.asarray(rec["flag1"], dtype=np.int8)),
            "flag2": pa.array(np.asarray(rec["flag2"], dtype=np.int8)),
        }
    )


def sync(
    lake: "Lake",
    db_path: str | os.PathLike[str] | None = None,
    *,
    lock_timeout: float = 30.0,
    force: bool = False,
) -> SyncResult:
    """Write the database into ``LAKE/detrends`` (under the lake lock) unless it is up to date.

    ``db_path`` defaults to the database the mirror was made from, then ``$NIGHTLAKE_DETREG``.
    """
    db_file = default_db(db_path)
    if db_file is None:
        info = manifest(lake) if lake.path.is_dir() else None
        if info is None:
            raise NightlakeError(
                f"no detrend database given for {lake.path}: pass --db DB or set {DB_ENV}"
            )
        db_file = Path(info["db_path"])
    with lake.locked(lock_timeout):
        return _sync_locked(lake, db_file, force=force)


def _sync_locked(lake: "Lake", db_file: Path, *, force: bool) -> SyncResult:
    import pyarrow as pa
    import pyarrow.compute as pc

    from nightlake import __version__
    from nightlake.detreg import read_db
    from nightlake.lake import atomic_write_bytes, write_parquet_atomic

    db_abs = str(Path(os.path.abspath(db_file)))
    sweep_directory(lake.path)  # a killed sync's unfinished generation and link
    info = manifest(lake)
    if not force and info is not None and info["db_path"] == db_abs and staleness(lake) is None:
        return SyncResult(db_abs, info["nrecord"], info.get("counts", {}), lake.detrends_dir, True)

    db = read_db(db_abs)
    table = records_table(db)
    fp = dict(db.fingerprint)
    counts: dict[str, int] = {}
    meta = {
        "db_path": db_abs,
        "size": int(fp["size"]),
        "mtime_ns": int(fp["mtime_ns"]),
        "sha256": fp["sha256"],
        "nrecord": len(table),
        "layout": getattr(db, "layout", None),
        "byteorder": getattr(db, "byteorder", None),
        "filters": {str(k): v for k, v in sorted(db.filters.items())},
        "nightlake_version": __version__,
        "synced_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    kv = {METADATA_KEY: json.dumps(meta).encode()}

    # Written under a temp name (which no generation glob matches), renamed when complete.
    generation = lake.path / f"{GENERATION_PREFIX}{time.time_ns()}"
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
            target = building / f"type={name}" / DATA_FILE
            write_parquet_atomic(part.replace_schema_metadata(kv), target)
        filters = pa.table(
            {
                "code": pa.array(sorted(db.filters), type=pa.int32()),
                "name": pa.array([db.filters[c] for c in sorted(db.filters)], type=pa.string()),
            }
        ).replace_schema_metadata(kv)
        write_parquet_atomic(filters, building / FILTERS_FILE)
        meta["counts"] = counts
        # Written last, so its directory fsync also records the type=… directories.
        atomic_write_bytes(building / MANIFEST, (json.dumps(meta, indent=1) + "\n").encode())
        os.rename(building, generation)
        _swap_link(lake, generation)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(generation, ignore_errors=True)
        raise
    _remove_old_generations(lake, keep=generation.name)
    return SyncResult(db_abs, len(table), counts, lake.detrends_dir, False)


def _swap_link(lake: "Lake", generation: Path) -> None:
    link = lake.detrends_dir
    tmp = temp_path_for(link)
    os.symlink(generation.name, tmp)
    if link.is_dir() and not link.is_symlink():
        # A real directory (a copied lake): move it aside so the symlink can take its place.
        link.rename(lake.path / f"{GENERATION_PREFIX}moved-{time.time_ns()}")
    os.replace(tmp, link)
    fsync_path(lake.path)


def _remove_old_generations(lake: "Lake", *, keep: str) -> None:
    generations = sorted(p for p in lake.path.glob(f"{GENERATION_PREFIX}*") if p.is_dir())
    stale = [p for p in generations if p.name != keep][:-1]  # keep the previous one too
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)


# -- views ----------------------------------------------------------------------------------


def view_sql(lake: "Lake", *, pin: bool = False) -> str:
    """``CREATE VIEW detrends / detrend_filters`` over the current mirror ('' when none).

    By default the views read through the ``detrends`` symlink, so SQL handed to other DuckDB
    clients keeps working after later syncs; ``pin=True`` (our own connections) resolves the
    symlink once, so a connection keeps reading the generation it opened.
    """
    if not (lake.detrends_dir / MANIFEST).is_file():
        return ""
    root = lake.detrends_dir.resolve() if pin else lake.detrends_dir.absolute()
    files = sorted(root.glob("type=*/*.parquet"))
    if files:
        glob = _sql_string(str(root / "type=*" / "*.parquet"))
        columns = ", ".join(name for name, _ in COLUMNS)
        detrends = (
            f"CREATE OR REPLACE VIEW detrends AS SELECT {columns} FROM read_parquet("
            f"{glob}, hive_partitioning = true, hive_types = {{'type': VARCHAR}});"
        )
    else:
        detrends = _empty_view("detrends", COLUMNS, None)
    filters = (
        f"CREATE OR REPLACE VIEW detrend_filters AS SELECT code, name FROM read_parquet("
        f"{_sql_string(str(root / FILTERS_FILE))});"
    )
    return detrends + "\n" + filters


def _empty_view(name: str, columns, error: str | None) -> str:
    if error is None:
        cols = ", ".join(f"NULL::{kind} AS {col}" for col, kind in columns)
        return f"CREATE OR REPLACE VIEW {name} AS SELECT {cols} FROM range(1) WHERE false;"
    # Every column and the filter raise: a constant NULL column would let the optimizer fold
    # a filter on it to false and skip the scan (and the error) altogether.
    fail = f"error({_sql_string(error)})"
    cols = ", ".join(f"CAST({fail} AS {kind}) AS {col}" for col, kind in columns)
    return f"CREATE OR REPLACE VIEW {name} AS SELECT {cols} FROM range(1) WHERE {fail} IS NULL;"


def failing_view_sql(reason: str) -> str:
    """Views with the mirror's columns that fail with ``reason`` when a query reads them."""
    return (
        _empty_view("detrends", COLUMNS, reason)
        + "\n"
        + _empty_view("detrend_filters", FILTER_COLUMNS, reason)
    )


def attach(lake: "Lake", con: "duckdb.DuckDBPyConnection", *, lock_timeout: float = 30.0) -> None:
    """Create the ``detrends`` views on ``con``, re-syncing a stale mirror first when possible."""
    import errno

    state = freshness(lake)
    reason = state.message
    if state.state == "stale":
        try:
            sync(lake, None, lock_timeout=lock_timeout)
            reason = staleness(lake)
        except (PermissionError, LakeError):  # a read-only lake
            reason = "detrend mirror is stale; run nightlake sync"
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            reason = "detrend mirror is stale; run nightlake sync"
        except NightlakeError as exc:  # a database that no longer validates, a lock timeout
            reason = f"detrend mirror is stale and re-syncing it failed: {exc}"
    con.execute(view_sql(lake, pin=True) if reason is None else failing_view_sql(reason))


# -- batch export ---------------------------------------------------------------------------


def write_assignments(
    lake: "Lake", detrend_type: str, mode: str, output: str | os.PathLike[str]
) -> tuple[int, int]:
    """``resolve_detrends(type, mode)`` over the whole lake, written atomically to Parquet.

    The file's kv metadata records the database fingerprint the answer came from, the
    nightlake version, the type and the mode. Returns (rows, rows with a detrend).
    """
    import duckdb

    from nightlake import __version__
    from nightlake.errors import QueryError, one_line
    from nightlake.lake import fetch_arrow, write_parquet_atomic

    con = lake.connect()
    try:
        table = fetch_arrow(
            con.sql(
                "SELECT * FROM resolve_detrends($t, mode := $m)",
                params={"t": detrend_type, "m": mode},
            )
        )
    except duckdb.Error as exc:
        raise QueryError(one_line(exc)) from exc
    finally:
        con.close()
    info = manifest(lake) or {}
    meta = dict(table.schema.metadata or {})
    meta[b"nightlake.resolve"] = json.dumps(
        {
            "type": detrend_type,
            "mode": mode,
            "nightlake_version": __version__,
            "db": {k: info.get(k) for k in ("db_path", "size", "mtime_ns", "sha256", "nrecord")},
        }
    ).encode()
    write_parquet_atomic(table.replace_schema_metadata(meta), Path(output))
    found = table.num_rows - table.column("detrend_index").null_count
    return table.num_rows, found
