"""Writing query results: the output formats, batch by batch, and atomic files.

Every writer consumes an Arrow :class:`~pyarrow.RecordBatchReader` one batch at a time, so
an export of millions of rows never holds them all in memory. ``table`` is for people (an
aligned table, long cells cut); the others are for programs:

=========  ==========================================  ==============================
format     what                                        file extensions (for ``-o``)
=========  ==========================================  ==============================
table      aligned text, widths from the first batch   .txt
csv, tsv   DuckDB's CSV writer; nested values as JSON  .csv / .tsv, .tab
json       one JSON array of row objects               .json
jsonl      one JSON object per line                    .jsonl, .ndjson
parquet    Parquet (zstd)                              .parquet, .pq
arrow      Arrow IPC: file format for files, stream    .arrow, .feather, .ipc
           format on standard output
=========  ==========================================  ==============================
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import json
import math
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from nightlake.columns import unique_names
from nightlake.errors import UsageError
from nightlake.files import atomic_replace
from nightlake.sql import sql_identifier

if TYPE_CHECKING:
    import pyarrow as pa

#: The formats written from Python rows (:class:`~nightlake.query.stream.Rows`) as well as
#: from Arrow; ``nightlake sql`` uses the rows, which need no pyarrow.
ROW_FORMATS = ("table", "json", "jsonl")
#: The formats DuckDB writes itself, from a :class:`~nightlake.query.stream.Relation`.
RELATION_FORMATS = ("csv", "tsv")
FORMATS = ("table", "csv", "tsv", "json", "jsonl", "parquet", "arrow")
BINARY_FORMATS = ("parquet", "arrow")
EXTENSIONS = {
    ".txt": "table",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}
#: Widest cell of the ``table`` format before it is cut with an ellipsis.
CELL_WIDTH = 40


def choose_format(fmt: str | None, output: str | os.PathLike[str] | None, terminal: bool) -> str:
    """The output format: ``--format``, else the extension of ``-o``, else table/csv by terminal."""
    if fmt is not None:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise UsageError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
        return fmt
    if output is not None:
        suffix = Path(output).suffix.lower()
        if suffix not in EXTENSIONS:
            raise UsageError(
                f"{output}: cannot tell the format from the extension {suffix or '(none)'!r}; "
                f"add --format ({', '.join(FORMATS)})"
            )
        return EXTENSIONS[suffix]
    return "table" if terminal else "csv"


def write_result(
    reader: pa.RecordBatchReader, fmt: str, sink: IO[bytes], *, stream_ipc: bool = True
) -> int | None:
    """Write every batch of ``reader`` to the binary ``sink`` in ``fmt``; return the row count
    (None for the formats DuckDB writes, which do not count them)."""
    writer = _WRITERS[fmt]
    if fmt == "arrow":
        return writer(reader, sink, stream_ipc=stream_ipc)
    return writer(reader, sink)


def write_result_file(
    reader: pa.RecordBatchReader, fmt: str, path: str | os.PathLike[str]
) -> int | None:
    """Write ``reader`` to ``path`` atomically (temp file beside it, then rename)."""
    if not Path(path).resolve().parent.is_dir():
        raise UsageError(f"{path}: the directory {Path(path).parent} does not exist")
    with atomic_replace(path) as tmp:
        if fmt in RELATION_FORMATS:
            return _WRITERS[fmt](reader, None, tmp)
        with open(tmp, "wb") as sink:
            return write_result(reader, fmt, sink, stream_ipc=False)


# -- binary formats ------------------------------------------------------------------------
def _write_parquet(reader, sink) -> int:
    import pyarrow.parquet as pq

    rows = 0
    with pq.ParquetWriter(sink, reader.schema, compression="zstd") as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def _write_arrow(reader, sink, *, stream_ipc: bool) -> int:
    import pyarrow as pa

    rows = 0
    open_writer = pa.ipc.new_stream if stream_ipc else pa.ipc.new_file
    with open_writer(sink, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


# -- text formats --------------------------------------------------------------------------
def _write_delimited(result, sink, delimiter: str, path: Path | None = None) -> None:
    """CSV/TSV written by DuckDB's own CSV writer (as ``nightlake export`` writes them), from
    a :class:`~nightlake.query.stream.Relation` or an Arrow reader; nested values as JSON.

    DuckDB writes to a file: ``path`` when given (the caller's temp file), else a named pipe
    whose bytes are copied into ``sink`` as they come, so rows stream (in DuckDB's blocks of
    a few MB) and a reader that leaves early (``| head``) stops the query.
    """
    if not hasattr(result, "errors"):  # an Arrow reader
        import duckdb

        from nightlake.query.stream import Relation

        with duckdb.connect() as con:  # its own connection, closed when the file is written
            return _write_delimited(Relation(con.from_arrow(result)), sink, delimiter, path)
    if result.relation is None:  # a last statement without rows
        return
    relation = _nested_as_json(result.relation)

    def write(target: str) -> None:
        relation.to_csv(target, sep=delimiter, header=True, use_tmp_file=False)

    if path is not None:
        with result.errors():
            write(str(path))
        return
    with result.errors():
        _through_pipe(write, sink)


def _through_pipe(write, sink) -> None:
    """Run ``write(path)`` in a thread on a named pipe and copy what it writes into ``sink``;
    raise what ``write`` raised, unless ``sink`` closed first (then that error is raised)."""
    import tempfile
    import threading

    failed: list[BaseException] = []
    with tempfile.TemporaryDirectory(prefix="nightlake-") as scratch:
        pipe = os.path.join(scratch, "rows")
        os.mkfifo(pipe)
        # Both ends open before the writer starts: its open never waits, and the reader sees
        # the end only when ``held`` closes, after ``write`` returned or failed (also before
        # ever opening the pipe).
        reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(reader, True)
        held = os.open(pipe, os.O_WRONLY)

        def produce() -> None:
            try:
                write(pipe)
            except BaseException as exc:  # noqa: BLE001  (raised in the caller's thread)
                failed.append(exc)
            finally:
                os.close(held)

        worker = threading.Thread(target=produce, name="nightlake-csv", daemon=True)
        worker.start()
        try:
            with open(reader, "rb") as rows:
                while block := rows.read(1 << 16):
                    sink.write(block)
        finally:  # on a closed sink the pipe has no reader left: the writer fails and stops
            worker.join()
    if failed:
        raise failed[0]


_NESTED_PREFIXES = ("STRUCT(", "MAP(", "UNION(")


def _nested_as_json(relation):
    """``relation`` with its lists, arrays, structs, maps and unions as JSON text (by
    position: a result may repeat a column name)."""
    kinds = [str(t) for t in relation.types]
    if not any(k.endswith("]") or k.startswith(_NESTED_PREFIXES) for k in kinds):
        return relation
    columns = []
    for i, (name, kind) in enumerate(zip(relation.columns, kinds), start=1):
        value = f"#{i}"
        if kind.endswith("]") or kind.startswith(_NESTED_PREFIXES):
            value = f"CAST(to_json(#{i}) AS VARCHAR)"
        columns.append(f"{value} AS {sql_identifier(name)}")
    return relation.project(", ".join(columns))


def _write_csv(result, sink, path: Path | None = None) -> None:
    return _write_delimited(result, sink, ",", path)


def _write_tsv(result, sink, path: Path | None = None) -> None:
    return _write_delimited(result, sink, "\t", path)


def _jsonable(value: Any) -> Any:
    """A Python value from Arrow as something JSON can hold (NaN/inf become null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _tuples(batch: pa.RecordBatch) -> Iterator[tuple]:
    """The rows of ``batch`` as tuples, by position (names may repeat in a result)."""
    return zip(*(_pylist(column) for column in batch.columns)) if batch.num_columns else iter(())


def _pylist(column) -> list:
    """Values as DuckDB's own Python rows give them, so both paths print alike: maps as
    dicts, intervals as timedeltas (a month as 30 days, as DuckDB counts it)."""
    import pyarrow as pa

    if pa.types.is_interval(column.type):
        return [
            None
            if v is None
            else _dt.timedelta(days=v.months * 30 + v.days, microseconds=v.nanoseconds // 1000)
            for v in column.to_pylist()
        ]
    return column.to_pylist(maps_as_pydicts="lossy")


_INTEGERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")
_NUMERIC_TYPES = frozenset(_INTEGERS + tuple("U" + t for t in _INTEGERS) + ("FLOAT", "DOUBLE"))


def _row_batches(result) -> tuple[list[str], list[bool], Iterator[list[tuple]]]:
    """Names, which columns are numeric, and the rows batch by batch, of an Arrow reader or
    of :class:`nightlake.query.stream.Rows` (DuckDB's rows, no pyarrow needed)."""
    if hasattr(result, "types"):  # Rows
        numeric = [t in _NUMERIC_TYPES or t.startswith("DECIMAL(") for t in result.types]
        return list(result.names), numeric, iter(result)
    import pyarrow as pa

    numeric = [
        pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
        for f in result.schema
    ]
    return result.schema.names, numeric, (list(_tuples(b)) for b in result)


def _rows(reader) -> Iterator[dict[str, Any]]:
    names, _, batches = _row_batches(reader)
    names = unique_names(names)
    for batch in batches:
        for row in batch:
            yield {k: _jsonable(v) for k, v in zip(names, row)}


def _write_json(reader, sink) -> int:
    rows = 0
    sink.write(b"[")
    for row in _rows(reader):
        sink.write((",\n" if rows else "\n").encode())
        sink.write(json.dumps(row, ensure_ascii=False).encode())
        rows += 1
    sink.write(b"\n]\n" if rows else b"]\n")
    return rows


def _write_jsonl(reader, sink) -> int:
    rows = 0
    for row in _rows(reader):
        sink.write(json.dumps(row, ensure_ascii=False).encode() + b"\n")
        rows += 1
    return rows


def cell_text(value: Any, digits: int | None = None, *, null: str = "NULL") -> str:
    """A value as one line of text, as the table format and the web pages show it; ``digits``
    rounds floats to that many decimals (a page's figures), ``null`` stands for a missing
    value."""
    if value is None:
        return null
    if isinstance(value, float):
        return format(value, ".10g") if digits is None else f"{value:.{digits}f}"
    if isinstance(value, (dict, list)):
        return json.dumps(_jsonable(value))
    return " ".join(str(value).split("\n"))


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _write_table(reader, sink, *, cell_width: int = CELL_WIDTH) -> int:
    names, numeric, batches = _row_batches(reader)
    return write_table(
        names,
        batches,
        lambda text: sink.write(text.encode()),
        numeric=numeric,
        cell_width=cell_width,
    )


def write_table(
    names: Sequence[str],
    batches: Iterable[Sequence[Sequence[Any]]],
    write: Callable[[str], Any],
    *,
    numeric: Sequence[bool] | None = None,
    cell_width: int | None = CELL_WIDTH,
) -> int:
    """The ``table`` format, the one text table of every command: a header, a rule, rows
    (numbers right-aligned, cells longer than ``cell_width`` cut, None as NULL), the count.

    Column widths come from the first batch of rows, so rows stream; ``write`` takes text;
    ``cell_width=None`` never cuts (for a filename that is the answer). Returns the count.
    """
    numeric = list(numeric) if numeric is not None else [False] * len(names)
    widths: list[int] | None = None
    rows = 0

    def line(cells: Sequence[str]) -> str:
        out = [
            _cut(c, w).rjust(w) if num else _cut(c, w).ljust(w)
            for c, w, num in zip(cells, widths, numeric)
        ]
        return " | ".join(out).rstrip() + "\n"

    def head(table: list[list[str]]) -> list[int]:
        widths = [max([len(n)] + [len(r[i]) for r in table]) for i, n in enumerate(names)]
        if cell_width is not None:
            widths = [min(w, max(cell_width, len(n))) for w, n in zip(widths, names)]
        return widths

    for batch in batches:
        table = [[cell_text(v) for v in row] for row in batch]
        if widths is None:
            widths = head(table)
            if names:
                write(line(names) + "-+-".join("-" * w for w in widths) + "\n")
        for cells in table:
            write(line(cells))
        rows += len(table)
    if widths is None and names:
        widths = head([])
        write(line(names) + "-+-".join("-" * w for w in widths) + "\n")
    write(f"({rows} row{'s' if rows != 1 else ''})\n")
    return rows


_WRITERS = {
    "table": _write_table,
    "csv": _write_csv,
    "tsv": _write_tsv,
    "json": _write_json,
    "jsonl": _write_jsonl,
    "parquet": _write_parquet,
    "arrow": _write_arrow,
}
