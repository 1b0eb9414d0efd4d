"""Commands that query the lake: ``sql`` (more to come: export, stats, macros, info, init-sql)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nightlake.cli import app

LakeOption = typer.Option(
    None, "--lake", help="Lake directory (default: $NIGHTLAKE_LAKE, else ./lake).", show_default=False
)


@app.command()
def sql(
    query: str = typer.Argument(..., help="The SQL to run."),
    lake: Optional[Path] = LakeOption,
    fmt: str = typer.Option("table", "--format", help="Output format: table, csv or json."),
) -> None:
    """Run SQL against the lake's views and macros."""
    from nightlake.lake import Lake

    result = Lake(lake).sql(query)
    if fmt == "csv":
        import pyarrow.csv as pacsv
        import sys

        pacsv.write_csv(result, sys.stdout.buffer)
    elif fmt == "json":
        import json

        typer.echo(json.dumps(result.to_pylist(), default=str, indent=1))
    else:
        typer.echo(result.to_pandas().to_string(index=False) if False else _table(result))


def _table(result) -> str:
    import duckdb

    return str(duckdb.from_arrow(result))
