"""The Parquet mirror of the DetReg database in the lake: its layout and the read side.

The database file is the write authority; the mirror is derived from it by
:mod:`nightlake.detrends.sync` (``nightlake sync``, and ``detregister add/delete`` for the
lakes tied to the database). On disk::

    LAKE/
      nightlake.json                        lake settings; "detreg_db": the tied database
      detrends -> .detrends-<ns>            symlink, swapped atomically by each sync
      .detrends-<ns>/
        _mirror.json                        format_version, the database's fingerprint (path,
                                            size, mtime, inode, sha256), its journal's size,
                                            NRECORD, version, sync time
        filters.parquet                     the header's filter table (view detrend_filters)
        type=flat/detrends.parquet          one row per record, Hive-partitioned by type
        type=bias/detrends.parquet          (kv metadata: the same fingerprint)
        …

This module only reads. Opening the lake (:func:`attach`, called from ``Lake.connect``)
compares the recorded fingerprint with the database file (size, mtime, inode and the
journal's size first, the content hash only when those differ) and defines the ``detrends``
views over the mirror when it is fresh, or views that fail with the one-line reason when it
is not (stale, missing, written by an older nightlake). It never re-syncs and never takes
the lake lock: a read cannot write the lake, and queries that do not touch detrends never
fail because of the database.

Filenames are bytes in the DetReg format. The mirror keeps them twice: ``filename`` (VARCHAR,
the name itself when it is valid UTF-8, else Python's ``backslashreplace`` escape of it, so it
can always be stored and printed) and ``filename_bytes`` (BLOB, the exact bytes).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nightlake.errors import LakeError, first_line
from nightlake.files import compare_fingerprint
from nightlake.sql import sql_glob, sql_string

if TYPE_CHECKING:
    import duckdb

    from nightlake.lake import LakeDirectory

DB_ENV = "NIGHTLAKE_DETREG"  # the database detregister, detsearch and sync use by default
MANIFEST = "_mirror.json"
FILTERS_FILE = "filters.parquet"
DATA_FILE = "detrends.parquet"
GENERATION_PREFIX = ".detrends-"
METADATA_KEY = b"nightlake.detreg"
#: ``_mirror.json``'s format_version. 2 added ``filename_bytes`` and the escaped ``filename``;
#: a mirror without it (format 1) is reported stale until ``nightlake sync`` rewrites it.
FORMAT_VERSION = 2
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
    ("filename_bytes", "BLOB"),
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


# -- fingerprints ---------------------------------------------------------------------------


def manifest(lake: LakeDirectory) -> dict[str, Any] | None:
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

    #: 'fresh'; 'stale' (the database changed); 'old-format' (written by an older nightlake);
    #: 'no-mirror'; 'no-database'; 'unreadable' (a damaged manifest, a database we cannot read)
    state: str
    message: str | None = None


def _usable_manifest(lake: LakeDirectory) -> tuple[dict[str, Any], Freshness | None]:
    """The mirror's manifest, and why this nightlake cannot read the mirror (None if it can)."""
    try:
        info = manifest(lake)
    except LakeError as exc:
        return {}, Freshness("unreadable", str(exc))
    if info is None:
        return {}, Freshness(
            "no-mirror",
            f"no detrend mirror in {lake.path}; run nightlake sync --db DB --lake {lake.path}",
        )
    version = info.get("format_version", 1) if isinstance(info, dict) else None
    if version != FORMAT_VERSION or not isinstance(info.get("db_path"), str):
        return {}, Freshness(
            "old-format",
            f"detrend mirror is stale; run nightlake sync --lake {lake.path} (the mirror in "
            f"{lake.detrends_dir} has format {version}, this nightlake reads {FORMAT_VERSION})",
        )
    return info, None


def journal_size(db: str | os.PathLike[str]) -> int | None:
    """The size of the database's journal (None without one): it grows with every write."""
    from nightlake.detrends.detreg.journal import journal_path

    try:
        return os.stat(journal_path(db)).st_size
    except OSError:
        return None


def freshness(lake: LakeDirectory) -> Freshness:
    """Compare the mirror's fingerprint with its database (stat first, SHA-256 if needed).

    Never raises for a problem of the mirror or the database: the answer says what is wrong,
    so that a query on images alone never fails because of the detrends.
    """
    info, problem = _usable_manifest(lake)
    if problem is not None:
        return problem
    db = Path(info["db_path"])
    recorded = {**info, "path": db}
    # The stat alone decides only when the journal is as it was at the sync: every journaled
    # write appends to it, while a file system may give a rewrite the inode its predecessor
    # freed (ext4 does), with the same size in the same mtime tick. A mirror synced before
    # the inode and the journal were recorded is compared by content.
    if "inode" not in info or info.get("journal_size", -1) != journal_size(db):
        recorded["mtime_ns"] = None
    try:
        state, _ = compare_fingerprint(recorded)
    except OSError as exc:
        return Freshness("unreadable", f"detrend database {db}: {exc.strerror or exc}")
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
        "stale",
        f"detrend mirror is stale; run nightlake sync --lake {lake.path} "
        f"({db} changed since the last sync)",
    )


def staleness(lake: LakeDirectory) -> str | None:
    """Why the mirror cannot be used as it is (a sentence), or None when it is fresh."""
    return freshness(lake).message


# -- views ----------------------------------------------------------------------------------


def view_sql(lake: LakeDirectory, *, pin: bool = False) -> str:
    """``CREATE VIEW detrends / detrend_filters`` over the current mirror ('' when none).

    By default the views read through the ``detrends`` symlink, so SQL handed to other DuckDB
    clients keeps working after later syncs; ``pin=True`` (our own connections) resolves the
    symlink once, so a connection keeps reading the generation it opened.
    """
    _, problem = _usable_manifest(lake)
    if problem is not None:
        return "" if problem.state == "no-mirror" else failing_view_sql(problem.message or "")
    root = lake.detrends_dir.resolve() if pin else lake.detrends_dir.absolute()
    files = sorted(root.glob("type=*/*.parquet"))
    if files:
        glob = sql_glob(root, "type=*/*.parquet")
        columns = ", ".join(name for name, _ in COLUMNS)
        detrends = (
            f"CREATE OR REPLACE VIEW detrends AS SELECT {columns} FROM read_parquet("
            f"{glob}, hive_partitioning = true, hive_types = {{'type': VARCHAR}});"
        )
    else:
        detrends = _empty_view("detrends", COLUMNS, None)
    filters = (
        f"CREATE OR REPLACE VIEW detrend_filters AS SELECT code, name FROM read_parquet("
        f"{sql_glob(root / FILTERS_FILE)});"
    )
    return detrends + "\n" + filters


def _empty_view(name: str, columns, error: str | None) -> str:
    if error is None:
        cols = ", ".join(f"NULL::{kind} AS {col}" for col, kind in columns)
        return f"CREATE OR REPLACE VIEW {name} AS SELECT {cols} FROM range(1) WHERE false;"
    # Every column and the filter raise: a constant NULL column would let the optimizer fold
    # a filter on it to false and skip the scan (and the error) altogether.
    fail = f"error({sql_string(error)})"
    cols = ", ".join(f"CAST({fail} AS {kind}) AS {col}" for col, kind in columns)
    return f"CREATE OR REPLACE VIEW {name} AS SELECT {cols} FROM range(1) WHERE {fail} IS NULL;"


def failing_view_sql(reason: str) -> str:
    """Views with the mirror's columns that fail with ``reason`` when a query reads them."""
    return (
        _empty_view("detrends", COLUMNS, reason)
        + "\n"
        + _empty_view("detrend_filters", FILTER_COLUMNS, reason)
    )


def attach(lake: LakeDirectory, con: duckdb.DuckDBPyConnection) -> None:
    """Define the ``detrends`` views on ``con``: over the mirror when it is fresh, else views
    that fail with the reason (only queries that read them fail). Reads only."""
    import duckdb

    reason = freshness(lake).message
    if reason is None:
        try:
            con.execute(view_sql(lake, pin=True))
            return
        except duckdb.InvalidInputException as exc:
            # a damaged file (DuckDB binds a view when it is made): the views say so until
            # a sync. (An unreadable one is no damage: it fails the connection, which the
            # next query makes again.)
            reason = (
                f"the detrend mirror {lake.detrends_dir} is damaged "
                f"({first_line(exc)}); rebuild it: nightlake sync --force "
                f"--lake {lake.path}"
            )
    con.execute(failing_view_sql(reason))
