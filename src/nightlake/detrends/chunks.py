"""Resolve in pieces: the detrend timeline once, then one task per chunk of lake files.

An image's detrend depends only on its own row and the (small) detrend side, so the images
can be split anywhere: the client builds ``detrend_timeline`` for the whole lake, and each
task applies it (``apply_detrend_timeline``, the same SQL as ``resolve_detrends``) to one
chunk of partition files and writes one output partition. The output is a directory::

    OUTPUT/
      part-00000.parquet   the rows of chunk 0 (lake files in path order)
      part-00001.parquet
      …

Every part has the columns and types of the local ``nightlake resolve`` file and its
``nightlake.resolve`` metadata. The directory appears whole or not at all: parts are written
into a hidden temp directory beside OUTPUT (each part itself by temp file + rename, so a task
retried after its worker died leaves no half-written part) and the directory is renamed into
place when every part is done.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from nightlake.errors import LakeError, QueryError, one_line
from nightlake.files import remove_path, sweep_temps, temp_path_for
from nightlake.query.lake import Lake
from nightlake.scaleout import Executor

#: Lake files per task: large enough that a task's fixed cost (a DuckDB connection, the
#: macros) is small against its work, small enough to spread a lake over many workers.
CHUNK_FILES = 64


@dataclass(frozen=True)
class Chunk:
    """One task: these lake files, resolved into ``target``."""

    lake: str
    files: tuple[str, ...]
    target: str
    detrend_type: str


def chunks_of(files: list[Path], size: int = CHUNK_FILES) -> list[list[Path]]:
    """``files`` in consecutive chunks of at most ``size``."""
    return [files[i : i + size] for i in range(0, len(files), size)]


def timeline(lake: Lake, detrend_type: str, mode: str) -> pa.Table:
    """``detrend_timeline(type, mode)`` over the whole lake, as Arrow (shipped to workers)."""
    query = "SELECT * FROM detrend_timeline($t, mode := $m)"
    return lake.sql(query, {"t": detrend_type, "m": mode})


def result_schema(lake: Lake, detrend_type: str, mode: str) -> pa.Schema:
    """The schema of the whole lake's ``resolve_detrends`` (no rows are computed)."""
    query = "SELECT * FROM resolve_detrends($t, mode := $m) LIMIT 0"
    return lake.sql(query, {"t": detrend_type, "m": mode}).schema


def resolve_chunk(chunk: Chunk, *, timeline: pa.Table, schema: pa.Schema) -> tuple[int, int]:
    """Resolve one chunk against the timeline and write it to ``chunk.target`` atomically.

    Runs on a worker: a bare DuckDB connection with the macros, the chunk's files read as the
    ``images`` view reads them (compacted and per-night files alike). A chunk of a lake whose
    partitions differ may lack columns of the whole; they are added as NULL so every part has
    ``schema``. Returns (rows, found).
    """
    import duckdb

    from nightlake.lake import write_parquet_atomic
    from nightlake.sql import fetch_arrow, load_macros

    lake = Lake(chunk.lake)
    if not lake.images_dir.is_dir():
        raise LakeError(f"{lake.path}: no lake images here (is the lake on a shared filesystem?)")
    files = [Path(f) for f in chunk.files]
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET enable_progress_bar = false")
        load_macros(con)
        con.register("_nl_timeline", timeline)
        con.execute(f"CREATE TEMP VIEW _nl_chunk AS {lake.images_select_sql(files)}")
        table = fetch_arrow(
            con.sql(
                "SELECT * FROM apply_detrend_timeline($t, '_nl_timeline', source := '_nl_chunk')",
                params={"t": chunk.detrend_type},
            )
        )
    except duckdb.Error as exc:
        raise QueryError(one_line(exc)) from exc
    finally:
        con.close()
    table = _conform(table, schema)
    write_parquet_atomic(table, Path(chunk.target))
    return table.num_rows, table.num_rows - table.column("detrend_index").null_count


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def write_assignments_chunked(
    lake: Lake,
    detrend_type: str,
    mode: str,
    output: str | os.PathLike[str],
    executor: Executor,
    *,
    chunks: list[list[Path]] | None = None,
) -> tuple[int, int]:
    """``resolve_detrends(type, mode)`` over the lake, one part per chunk, into the directory
    ``output`` (see the module docstring). Returns (rows, rows with a detrend)."""
    from nightlake.detrends.rules import resolve_metadata

    output = Path(output)
    files = lake.image_files()
    if not files:
        raise LakeError(f"{lake.path}: the lake has no images to resolve")
    executor.check_visible(lake.path)
    if chunks is None:
        chunks = chunks_of(files)
    meta = resolve_metadata(lake, detrend_type, mode)
    schema = result_schema(lake, detrend_type, mode).with_metadata(meta)
    shared = timeline(lake, detrend_type, mode)

    output.parent.mkdir(parents=True, exist_ok=True)
    sweep_temps(output)
    tmp = temp_path_for(output)
    tmp.mkdir()
    try:
        tasks = [
            Chunk(
                lake=str(lake.path.resolve()),
                files=tuple(str(f.resolve()) for f in chunk),
                target=str(tmp.resolve() / f"part-{n:05d}.parquet"),
                detrend_type=detrend_type,
            )
            for n, chunk in enumerate(chunks)
            if chunk
        ]
        counts = executor.map(resolve_chunk, tasks, timeline=shared, schema=schema)
        _commit_directory(tmp, output)
    except BaseException:
        remove_path(tmp)
        raise
    return sum(r for r, _ in counts), sum(f for _, f in counts)


def _commit_directory(tmp: Path, output: Path) -> None:
    """Put the finished directory ``tmp`` in the place of ``output`` (a file or a directory)."""
    from nightlake.files import fsync_path, replace_path

    for leftover in tmp.iterdir():  # temps of a worker that died before its retry
        if not leftover.name.endswith(".parquet"):
            remove_path(leftover)
    fsync_path(tmp)
    replace_path(tmp, output)
    fsync_path(output.parent)
