"""Writing a command's result: to ``-o FILE`` (atomically) or stdout, in the chosen format.

The one output path of ``sql``, ``images-at``, ``stats``, ``macros`` and ``audit``; the
formats themselves are :mod:`nightlake.query.output` and :mod:`nightlake.query.astro`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from nightlake.errors import UsageError


def emit(reader, fmt: str | None, output: Path | None) -> int | None:
    """Write a result stream to ``output`` or stdout in the chosen format; return rows (None
    for the formats DuckDB writes)."""
    from nightlake.query.output import choose_format

    return _write(lambda _: reader, choose_format(fmt, output, sys.stdout.isatty()), output)


def emit_query(con, query: str, params, fmt: str | None, output: Path | None) -> int | None:
    """Run ``query`` and write its result like :func:`emit`; the text formats get DuckDB's
    rows, and DuckDB writes CSV itself, so neither imports pyarrow."""
    from nightlake.query.output import RELATION_FORMATS, ROW_FORMATS, choose_format
    from nightlake.query.stream import stream, stream_relation, stream_rows

    def run(fmt: str):
        if fmt in ROW_FORMATS:
            return stream_rows(con, query, params)
        return (stream_relation if fmt in RELATION_FORMATS else stream)(con, query, params)

    return _write(run, choose_format(fmt, output, sys.stdout.isatty()), output)


def _write(run, fmt: str, output: Path | None) -> int | None:
    from nightlake.query.output import BINARY_FORMATS, write_result, write_result_file

    result = run(fmt)
    if output is not None:
        return write_result_file(result, fmt, output)
    if fmt in BINARY_FORMATS and sys.stdout.isatty():
        raise UsageError(f"{fmt} is binary: redirect stdout or write it with -o FILE")
    sink = sys.stdout.buffer
    sys.stdout.flush()
    rows = write_result(result, fmt, sink)
    sink.flush()  # a reader that left early (`| head`) is the app's one broken-pipe path
    return rows


def run_to_output(lake, query: str, params, fmt: str | None, output: Path | None) -> None:
    """Run a read-only query on ``lake`` and write its rows to ``output`` or stdout: the one
    path of ``sql`` and ``images-at`` (an output inside the lake refused first)."""
    from nightlake.query.stream import open_connection

    if output is not None:
        from nightlake.query.export import refuse_inside_lake

        refuse_inside_lake(lake, output)
    if _emit_astro(lake, query, params, fmt, output):
        return
    con = open_connection(lake)
    try:
        emit_query(con, query, params, fmt, output)
    finally:
        con.close()


def _emit_astro(lake, query: str, params, fmt: str | None, output: Path | None) -> bool:
    """ECSV/FITS/VOTable (with units) through :mod:`nightlake.query.astro`; False otherwise."""
    from nightlake.query.astro import astro_format, write_query

    astro = astro_format(fmt, output)
    if astro is None:
        return False
    if output is None:
        raise UsageError(f"{astro} is written to a file: add -o FILE")
    write_query(lake, query, params, output, astro)
    return True
