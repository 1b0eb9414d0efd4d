"""The options several commands share, each defined once (name, default, help).

A command takes them as defaults (``lake: Path | None = LakeOption``); where the wording
must name what is waited for or which formats apply, a small factory takes that word.
"""

from __future__ import annotations

import typer

from nightlake.detrends.mirror import DB_ENV  # noqa: F401  (the one definition, re-exported)

LAKE_HELP = "Lake directory (default: $NIGHTLAKE_LAKE, else ./lake)."

LakeOption = typer.Option(None, "--lake", help=LAKE_HELP, show_default=False)
FormatOption = typer.Option(
    None,
    "--format",
    help="table, csv, tsv, json, jsonl, parquet, arrow, ecsv, fits or votable (default: from "
    "-o's extension, else table on a terminal and csv otherwise).",
    show_default=False,
)
OutputOption = typer.Option(
    None,
    "-o",
    "--output",
    help="Write the result to this file (atomically) instead of stdout.",
    show_default=False,
)
AsOfOption = typer.Option(
    None,
    "--as-of",
    show_default=False,
    help="Answer from the database as it was at this time (ISO-8601 UTC or Unix seconds), "
    "replayed from its journal.",
)
ParamOption = typer.Option(
    [],
    "-p",
    "--param",
    help="Bind $NAME to VALUE: -p night=20190402 (repeatable).",
    show_default=False,
)


def format_option(choices: str, default: str | None = None):
    """``--format`` of a command with its own formats (``choices`` is the help text)."""
    return typer.Option(default, "--format", help=choices, show_default=default is not None)


def db_option(help: str, envvar: str | None = None):
    """``--db``: the DetReg database; ``help`` says which one is taken without it."""
    return typer.Option(None, "--db", envvar=envvar, show_default=False, help=help)


def lock_timeout_option(what: str):
    """``--lock-timeout``: seconds to wait for ``what`` (a lock) before giving up."""
    return typer.Option(30.0, "--lock-timeout", help=f"Seconds to wait for {what}.")


def executor_option(what: str):
    """``--executor``: where the heavy work runs; ``what`` says what changes on dask."""
    return typer.Option("local", "--executor", help=f"local (this process) or dask ({what}).")


SchedulerOption = typer.Option(
    None,
    "--scheduler",
    help="Dask scheduler to join (tcp://host:8786); the lake must be on a filesystem every "
    "worker sees.",
)
WorkersOption = typer.Option(
    None, "--workers", help="Start a local Dask cluster of N worker processes (default 2)."
)
