"""``nightlake export``: a query or view written with DuckDB's COPY, atomically.

::

    --to nightly.parquet                      one file (parquet or csv)
    --to by_night/ --partition-by night       a Hive-partitioned directory:
      by_night/night=20190402/data_0.parquet
      by_night/night=20190403/data_0.parquet

COPY writes into a temporary file or directory beside the target (same file system), which
is fsynced and renamed into place only when COPY succeeded: a failed export leaves nothing
half-written, and an existing target is replaced only with ``overwrite``. The temp names are
those of :mod:`nightlake.files`; the next export to the same target sweeps any a killed export
left. No target lies inside the lake, whatever the spelling (symlinks, ``..``).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nightlake.detrends.provenance import EXPORT_KEY
from nightlake.errors import QueryError, UsageError
from nightlake.files import remove_path, replace_path, sweep_temps, temp_path_for
from nightlake.query.stream import (
    check_params,
    check_plan,
    check_read_only,
    error_message,
    open_connection,
    parse_statements,
    query_errors,
)
from nightlake.sql import sql_identifier

if TYPE_CHECKING:
    from nightlake.query.lake import Lake

EXPORT_FORMATS = ("parquet", "csv")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PATH_PARAM = "nightlake_export_target"
_META_PARAM = "nightlake_export_provenance"


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote."""

    path: Path
    format: str
    rows: int
    files: int


def export_format(fmt: str | None, to: Path, partitioned: bool) -> str:
    """``fmt``, else from the extension of ``to``, else parquet."""
    if fmt is not None:
        if fmt.lower() not in EXPORT_FORMATS:
            raise UsageError(f"unknown export format {fmt!r}: choose parquet or csv")
        return fmt.lower()
    suffix = to.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".parquet", ".pq") or partitioned or not suffix:
        return "parquet"
    raise UsageError(f"{to}: cannot tell the format from {suffix!r}; add --format parquet|csv")


def source_query(con, source: str) -> str:
    """A view or table name becomes ``SELECT * FROM name``; anything else is a query."""
    name = source.strip()
    if _IDENTIFIER.match(name):
        known = con.execute(
            "SELECT count(*) FROM (SELECT view_name AS n FROM duckdb_views() "
            "UNION ALL SELECT table_name FROM duckdb_tables()) WHERE lower(n) = lower($n)",
            {"n": name},
        ).fetchone()[0]
        if known:
            return f"SELECT * FROM {sql_identifier(name)}"
    return source


def _inside(path: Path, directory: Path) -> bool:
    try:
        path.relative_to(directory)
        return True
    except ValueError:
        return False


def refuse_inside_lake(lake: Lake, target: str | os.PathLike[str]) -> None:
    """Results never go into the lake (its views would read them back, its settings could be
    overwritten), nor replace a directory that holds it. Both paths are compared with every
    symlink resolved, so no spelling of the path gets around the rule."""
    where = Path(target).resolve()
    lake_dir = lake.path.resolve()
    if _inside(where, lake_dir):
        raise UsageError(
            f"{target}: refusing to write into the lake {lake.path} "
            f"(it resolves to {where}); write the result outside the lake"
        )
    if _inside(lake_dir, where):
        raise UsageError(
            f"{target}: refusing to write over a directory that holds the lake {lake.path}"
        )


def _fsync_tree(path: Path) -> int:
    """fsync every file under ``path`` (or ``path`` itself); return the file count."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for file in files:
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
    return len(files)


def export(
    lake: Lake,
    source: str,
    to: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    partition_by: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: Callable[[float], None] | None = None,
) -> ExportResult:
    """Write ``source`` (a query, or a view/table name) to ``to`` with DuckDB's COPY.

    ``progress`` is called now and then with the percentage DuckDB reports, and with 100.0
    at the end.
    """
    import duckdb

    target = Path(to)
    partition_by = [c.strip() for c in partition_by if c.strip()]
    refuse_inside_lake(lake, target)
    fmt = export_format(fmt, target, bool(partition_by))
    sweep_temps(target)  # a killed export's leftovers (an old version it moved aside returns)
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise UsageError(f"{target}: already exists (add --overwrite to replace it)")
    if not target.parent.is_dir():
        raise UsageError(f"{target.parent}: no such directory for the export")

    con = open_connection(lake)
    try:
        query = source_query(con, source)
        statements = parse_statements(query)
        check_read_only(query, statements)
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise UsageError("export takes one SELECT query (or a view name), not a script")
        query = statements[0].query.strip().rstrip(";")
        params = dict(params or {})
        check_params(query, params, statements)
        with query_errors(query):
            check_plan(con, statements[0], params)
        try:
            columns = con.sql(query, params=params or None).columns
        except duckdb.Error as exc:
            raise QueryError(error_message(exc, query)) from exc
        unknown = [c for c in partition_by if c not in columns]
        if unknown:
            raise UsageError(
                f"--partition-by {unknown[0]!r} is not a column of the result "
                f"(columns: {', '.join(columns)})"
            )
        options = (
            ["FORMAT parquet, COMPRESSION zstd"] if fmt == "parquet" else ["FORMAT csv, HEADER"]
        )
        provenance = _provenance(lake, query, params) if fmt == "parquet" else None
        if provenance is not None:
            options.append(f"KV_METADATA {{'{EXPORT_KEY}': ${_META_PARAM}}}")
            params = {**params, _META_PARAM: provenance}
        if partition_by:
            options.append("PARTITION_BY (" + ", ".join(map(sql_identifier, partition_by)) + ")")
        # the newline ends a trailing -- comment of the query, which would swallow the ")"
        copy = f"COPY ({query}\n) TO ${_PATH_PARAM} ({', '.join(options)})"

        tmp = temp_path_for(target)
        try:
            rows = _run_copy(con, copy, {**params, _PATH_PARAM: str(tmp)}, query, progress)
            files = _fsync_tree(tmp) if tmp.exists() else 0
            if not tmp.exists():  # a partitioned COPY of zero rows writes no directory
                tmp.mkdir()
            replace_path(tmp, target)
        finally:
            remove_path(tmp)
    finally:
        con.close()
    if progress:
        progress(100.0)
    return ExportResult(path=target, format=fmt, rows=rows, files=files)


def _provenance(lake: Lake, query: str, params: dict[str, Any]) -> str | None:
    """The provenance (JSON) of an export that reads the detrend mirror, else None."""
    import json

    from nightlake.detrends.provenance import export_record, reads_mirror

    if not reads_mirror(lake, query, params):
        return None
    return json.dumps(export_record(lake, query))


def _run_copy(
    con, copy: str, params: dict[str, Any], query: str, progress: Callable[[float], None] | None
) -> int:
    """Run COPY; with ``progress``, in a thread while this one polls DuckDB's progress."""
    import duckdb

    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["rows"] = con.execute(copy, params).fetchone()[0]
        except BaseException as exc:  # re-raised in the calling thread
            outcome["error"] = exc

    if progress is None:
        run()
    else:
        worker = threading.Thread(target=run, name="nightlake-export", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
            done = con.query_progress()
            if done >= 0:
                progress(min(float(done), 99.9))
    error = outcome.get("error")
    if isinstance(error, duckdb.Error):
        raise QueryError(error_message(error, query)) from error
    if error is not None:
        raise error
    return int(outcome["rows"])
