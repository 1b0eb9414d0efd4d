"""The macro library: loads ``sql/*.sql`` into a DuckDB connection, in dependency order.

Files are named ``NN_topic.sql``; the numeric prefix is the load order, so a file may use
the macros of every file before it. This module runs only SQL shipped with nightlake; SQL
built from user input goes through bound parameters, never through string formatting.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


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
    """All macro definitions as one SQL script (what ``load_macros`` executes)."""
    return "\n".join(f"-- {p.name}\n{p.read_text()}" for p in macro_files())


def load_macros(con) -> None:
    """Define every macro of ``sql/`` on ``con`` (a ``duckdb.DuckDBPyConnection``)."""
    for path in macro_files():
        con.execute(path.read_text())


def sql_string(value: str) -> str:
    """A SQL string literal, for the file paths of view definitions (which cannot be bound
    parameters); the paths are the lake's own, never user SQL."""
    return "'" + value.replace("'", "''") + "'"
