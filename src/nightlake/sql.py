"""The macro library: loads ``sql/*.sql`` into a DuckDB connection, in dependency order.

Files are named ``NN_topic.sql``; the numeric prefix is the load order, so a file may use
the macros of every file before it. This module runs only SQL shipped with nightlake; SQL
built from user input goes through bound parameters, never through string formatting.

Parsing and binding the macro text costs more than everything else a fresh connection does,
so the macros are defined once into a small DuckDB file, the catalog, which each connection
copies (``COPY FROM DATABASE … (SCHEMA)``: the stored definitions, no parsing)::

    $XDG_CACHE_HOME/nightlake/            (else ~/.cache/nightlake; $NIGHTLAKE_CACHE_DIR wins)
      macros-<sha256 of the text>-duckdb<version>.duckdb

The name holds the hash of the macro text and DuckDB's version, so an edited ``sql/`` or
another DuckDB gets a catalog of its own: one is never used for text it was not built from.
Without a writable cache directory the text is run as before.

Besides: SQL quoting for the text nightlake writes itself, and :func:`fetch_arrow`, the one
place that knows how this DuckDB hands a relation to Arrow.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

_HERE = Path(__file__).resolve().parent
CACHE_ENV = "NIGHTLAKE_CACHE_DIR"


def sql_dir() -> Path:
    """Where the macro files are: inside the installed package, or ``sql/`` of a checkout."""
    for candidate in (_HERE / "sql", _HERE.parents[1] / "sql"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("nightlake's sql/ directory is missing from this installation")


def macro_files() -> list[Path]:
    """The macro files in load order."""
    return sorted(sql_dir().glob("*.sql"))


def macro_sql() -> str:
    """All macro definitions as one SQL script (the text the catalog is built from)."""
    return "\n".join(f"-- {p.name}\n{p.read_text()}" for p in macro_files())


def load_macros(con) -> None:
    """Define every macro of ``sql/`` on ``con`` (a ``duckdb.DuckDBPyConnection``), from the
    catalog when there is one (see the module's doc), else from the text."""
    texts = [p.read_text() for p in macro_files()]
    catalog = macro_catalog(texts)
    if catalog is not None and _copy_catalog(con, catalog):
        return
    for text in texts:
        con.execute(text)


def cache_dir() -> Path | None:
    """Where nightlake keeps derived files of its own (not of a lake); None when disabled
    (``NIGHTLAKE_CACHE_DIR=""``)."""
    given = os.environ.get(CACHE_ENV)
    if given is not None:
        return Path(given) if given else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nightlake"


def macro_catalog(texts: list[str] | None = None) -> Path | None:
    """The catalog file of the macro text ``texts`` (built now when missing), or None when it
    cannot be written."""
    import duckdb

    directory = cache_dir()
    if directory is None:
        return None
    texts = [p.read_text() for p in macro_files()] if texts is None else texts
    digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:32]
    path = directory / f"macros-{digest}-duckdb{duckdb.__version__}.duckdb"
    if path.is_file():
        return path
    try:
        _build_catalog(path, texts)
    except (OSError, duckdb.Error):
        return None
    return path


def _build_catalog(path: Path, texts: list[str]) -> None:
    import duckdb

    from nightlake.files import atomic_replace

    with atomic_replace(path) as tmp:
        con = duckdb.connect(str(tmp))
        try:
            for text in texts:
                con.execute(text)
            con.execute("CHECKPOINT")
        finally:
            con.close()


def _copy_catalog(con, catalog: Path) -> bool:
    """Copy the catalog's macros into ``con``'s database; False when that fails (the text then
    defines them all: every definition is CREATE OR REPLACE)."""
    import duckdb

    alias = "nightlake_macro_catalog"
    try:
        (target,) = con.execute("SELECT current_database()").fetchone()
        con.execute(f"ATTACH {sql_string(str(catalog))} AS {alias} (READ_ONLY)")
    except duckdb.Error:
        return False
    try:
        con.execute(f"COPY FROM DATABASE {alias} TO {sql_identifier(target)} (SCHEMA)")
        return True
    except duckdb.Error:
        return False
    finally:
        con.execute(f"DETACH {alias}")


def sql_identifier(name: str) -> str:
    """A quoted SQL identifier (a column or table name that may hold any character)."""
    return '"' + name.replace('"', '""') + '"'


def sql_string(value: str) -> str:
    """A SQL string literal, for the file paths of view definitions (which cannot be bound
    parameters); the paths are the lake's own, never user SQL."""
    return "'" + value.replace("'", "''") + "'"


def sql_glob(directory: str | os.PathLike[str], pattern: str = "") -> str:
    """A SQL string literal of a DuckDB file glob: ``pattern`` (``*.parquet``,
    ``year=*/*.parquet``; empty: ``directory`` itself, a file) under ``directory``, whose own
    ``[``, ``*`` and ``?`` match only themselves (a lake under ``runs[2]/``)."""
    import glob

    literal = glob.escape(os.fspath(directory))
    return sql_string(f"{literal}/{pattern}" if pattern else literal)


def fetch_arrow(result) -> pa.Table:
    """A DuckDB relation's rows as an Arrow table (DuckDB 2 renamed ``fetch_arrow_table``)."""
    fetch = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table
    return fetch()
