"""Commands that read the lake: ``sql``, ``export``, ``stats``, ``macros``, ``info``, ``init-sql``.

Parsing and printing only; the work is done by the modules of :mod:`nightlake.query`
(``stream``, ``output``, ``export``, ``stats``, ``plot``, ``info``, ``astro``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from nightlake.cli.options import (
    FormatOption,
    LakeOption,
    OutputOption,
    ParamOption,
    format_option,
)
from nightlake.cli.progress import Progress
from nightlake.cli.results import emit_query, run_to_output
from nightlake.cli.root import app
from nightlake.errors import UsageError

MACROS_QUERY = """
SELECT function_name AS name,
       CASE function_type WHEN 'table_macro' THEN 'table' ELSE 'scalar' END AS kind,
       function_name || '(' || array_to_string(parameters, ', ') || ')' AS signature,
       comment
FROM duckdb_functions()
WHERE function_type IN ('macro', 'table_macro') AND NOT internal
ORDER BY name
"""


def _read_query(query: str | None, file: Path | None) -> str:
    if query is not None and file is not None:
        raise UsageError("give the query as an argument or with -f FILE, not both")
    if file is not None:
        return sys.stdin.read() if str(file) == "-" else file.read_text()
    if query is None:
        raise UsageError("no query: give it as an argument, with -f FILE, or as - to read stdin")
    return sys.stdin.read() if query == "-" else query


@app.command()
def sql(
    query: str | None = typer.Argument(
        None, help="The SQL to run; - reads it from stdin.", show_default=False
    ),
    file: Path | None = typer.Option(
        None, "-f", "--file", help="Read the SQL from this file (- for stdin).", show_default=False
    ),
    lake: Path | None = LakeOption,
    fmt: str | None = FormatOption,
    output: Path | None = OutputOption,
    param: list[str] = ParamOption,
) -> None:
    """Run SQL on the lake's views and macros (read-only), streaming the result."""
    from nightlake.query.lake import Lake
    from nightlake.query.stream import parse_params

    text = _read_query(query, file)
    params = parse_params(param)
    run_to_output(Lake(lake), text, params, fmt, output)


@app.command()
def export(
    source: str = typer.Argument(..., help="A SELECT query, or the name of a view (e.g. images)."),
    to: Path = typer.Option(..., "--to", help="Target file, or directory with --partition-by."),
    lake: Path | None = LakeOption,
    fmt: str | None = format_option(
        "parquet, csv, ecsv, fits or votable (default: from --to's extension, else parquet)."
    ),
    partition_by: str | None = typer.Option(
        None,
        "--partition-by",
        help="Write a Hive-partitioned directory by these columns: night,target.",
        show_default=False,
    ),
    param: list[str] = ParamOption,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing target."),
) -> None:
    """Write a query or view to Parquet/CSV with DuckDB's COPY, atomically."""
    from nightlake.query.export import export as run_export
    from nightlake.query.lake import Lake
    from nightlake.query.stream import parse_params

    columns = [c for c in (partition_by or "").split(",") if c.strip()]
    params = parse_params(param)
    if not columns and _export_astro(Lake(lake), source, to, fmt, params, overwrite):
        return
    stage = f"exporting to {to}"
    with Progress() as bar:
        result = run_export(
            Lake(lake),
            source,
            to,
            fmt=fmt,
            partition_by=columns,
            params=params,
            overwrite=overwrite,
            progress=(lambda done: bar.update(stage, done, 100)) if bar.active else None,
        )
    what = f"{result.files} files under " if columns else ""
    typer.echo(f"exported {result.rows} rows to {what}{result.path} ({result.format})", err=True)


def _export_astro(lake, source: str, to: Path, fmt, params, overwrite: bool) -> bool:
    """``export`` to ECSV/FITS/VOTable (a view name or a query); False for other formats."""
    from nightlake.query.astro import astro_format, write_query
    from nightlake.query.export import refuse_inside_lake

    astro = astro_format(fmt, to)
    if astro is None:
        return False
    if to.exists() and not overwrite:
        raise UsageError(f"{to}: exists; add --overwrite to replace it")
    refuse_inside_lake(lake, to)
    from nightlake.query.export import source_query

    con = lake.cursor()
    try:
        query = source_query(con, source)
    finally:
        con.close()
    rows = write_query(lake, query, params, to, astro)
    typer.echo(f"exported {rows} rows to {to} ({astro})", err=True)
    return True


@app.command()
def stats(
    by: str = typer.Option("night", "--by", help="night, target, detector or survey."),
    lake: Path | None = LakeOption,
    fmt: str | None = FormatOption,
    output: Path | None = OutputOption,
    plot: Path | None = typer.Option(
        None,
        "--plot",
        help="Also draw FWHM and zero point per night and per detector to this PNG.",
        show_default=False,
    ),
) -> None:
    """Survey statistics (image counts, exposure, FWHM, zero point, sky noise, airmass)."""
    from nightlake.query.lake import Lake
    from nightlake.query.stats import require_images, stats_query
    from nightlake.query.stream import open_connection

    the_lake = Lake(lake)
    query = stats_query(by)
    require_images(the_lake)
    from nightlake.query.export import refuse_inside_lake

    for written in (output, plot):
        if written is not None:
            refuse_inside_lake(the_lake, written)
    if plot is not None and not plot.resolve().parent.is_dir():
        raise UsageError(f"{plot}: the directory {plot.parent} does not exist")
    con = open_connection(the_lake)
    try:
        emit_query(con, query, None, fmt, output)
    finally:
        con.close()
    if plot is not None:
        from nightlake.query.plot import plot_survey
        from nightlake.query.stats import stats_table

        nightly = stats_table(the_lake, "night")
        detectors = stats_table(the_lake, "detector")
        survey = stats_table(the_lake, "survey").to_pylist()[0]
        title = (
            f"nightlake: {the_lake.path.resolve()} — {survey['images']} images, "
            f"{survey['nights']} nights, {survey['targets']} targets"
        )
        plot_survey(nightly, detectors, plot, title=title)
        typer.echo(f"plot written to {plot}", err=True)


@app.command()
def macros(fmt: str | None = FormatOption) -> None:
    """List every SQL macro with its signature and comment."""
    import duckdb

    from nightlake.sql import load_macros

    con = duckdb.connect()  # macros do not need a lake: they bind when called
    try:
        load_macros(con)
        emit_query(con, MACROS_QUERY, None, fmt, None)
    finally:
        con.close()


@app.command()
def info(
    lake: Path | None = LakeOption,
    fmt: str | None = format_option("text (default) or json."),
) -> None:
    """Partitions, rows, targets, nights, size, stale partitions and the schema with units."""
    import json

    from nightlake.errors import LakeError
    from nightlake.query.info import human_size, lake_info
    from nightlake.query.lake import Lake

    the_lake = Lake(lake)
    if not the_lake.path.is_dir():
        raise LakeError(f"{the_lake.path}: no lake here")
    summary = lake_info(the_lake)
    if fmt == "json":
        typer.echo(json.dumps(summary.to_dict(), indent=1))
        return
    if fmt not in (None, "text"):
        raise UsageError(f"unknown format {fmt!r} for info: text or json")
    data = summary.to_dict()
    typer.echo(f"lake:         {the_lake.path.resolve()}")
    typer.echo(f"partitions:   {data['partitions']}")
    typer.echo(f"rows:         {data['rows']}")
    targets = data["targets"]
    shown = ", ".join(targets[:12]) + (", …" if len(targets) > 12 else "")
    typer.echo(f"targets:      {len(targets)}" + (f" ({shown})" if targets else ""))
    nights = f"{data['nights']}"
    if data["first_night"]:
        nights += f" (first {data['first_night']}, last {data['last_night']})"
    typer.echo(f"nights:       {nights}")
    typer.echo(f"size on disk: {human_size(data['size_bytes'])}")
    for label, parts in (
        ("stale partitions", data["stale_partitions"]),
        ("missing sources", data["missing_sources"]),
    ):
        typer.echo(f"{label}: {len(parts)}")
        for part in parts:
            for other in part.get("other_options", []) if label.startswith("stale") else []:
                typer.echo(f"  {part['partition']}: written with {other}")
            for src in part["sources"]:
                why = src["detail"] or src["status"]
                typer.echo(f"  {part['partition']}: {src['path']}: {why}")
    if data["stale_partitions"]:
        typer.echo(f"  (reconvert with: nightlake convert SOURCE… --lake {the_lake.path})")
    if summary.columns:
        typer.echo("schema:")
        width = max(len(c.name) for c in summary.columns)
        type_width = max(len(c.type) for c in summary.columns)
        for c in summary.columns:
            extra = f"[{c.unit}]" if c.unit else ""
            if c.original_name:
                extra += f" (ECSV name {c.original_name})"
            if c.description:
                extra += f" {c.description}"
            typer.echo(f"  {c.name.ljust(width)}  {c.type.ljust(type_width)}  {extra}".rstrip())


@app.command("init-sql")
def init_sql(lake: Path | None = LakeOption) -> None:
    """Print SQL that defines the lake's views and macros for any DuckDB client."""
    from nightlake.query.lake import Lake
    from nightlake.query.stream import init_script

    typer.echo(init_script(Lake(lake)))
