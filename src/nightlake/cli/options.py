"""The options several commands share, each defined once (name, default, help).

A command takes them as defaults (``lake: Path | None = LakeOption``); where the wording
must say what is written, waited for or taken by default, a small factory takes that word.
"""

from __future__ import annotations

import typer

from nightlake.detrends.mirror import DB_ENV  # the one definition, re-exported

LAKE_HELP = "Lake directory (default: $NIGHTLAKE_LAKE, else ./lake)."
DB_HELP = f"The DetReg database (default: ${DB_ENV})."


def lake_option(help: str = LAKE_HELP):
    """``--lake``; ``help`` where a command takes the lake only with some other option."""
    return typer.Option(None, "--lake", help=help, show_default=False)


def format_option(choices: str, default: str | None = None):
    """``--format`` of a command with its own formats (``choices`` is the help text)."""
    return typer.Option(default, "--format", help=choices, show_default=default is not None)


def changes_format_option(when: str):
    """``--format`` of a list of images whose detrend changed; ``when`` names the options
    that make one (the formats: :func:`nightlake.cli.detrend_cmds.check_changes_output`)."""
    return format_option(
        f"{when}: table (a summary by night x CCD x type), json or parquet (every changed image).",
        "table",
    )


def output_option(help: str):
    """``-o/--output``: the file a command writes; ``help`` says what goes there."""
    return typer.Option(None, "-o", "--output", help=help, show_default=False)


def db_option(help: str, envvar: str | None = None):
    """``--db``: the DetReg database; ``help`` says which one is taken without it."""
    return typer.Option(None, "--db", envvar=envvar, show_default=False, help=help)


def lock_timeout_option(what: str):
    """``--lock-timeout``: seconds to wait for ``what`` (a lock) before giving up."""
    return typer.Option(30.0, "--lock-timeout", help=f"Seconds to wait for {what}.")


def executor_option(what: str):
    """``--executor``: where the heavy work runs; ``what`` says what changes on dask."""
    return typer.Option("local", "--executor", help=f"local (this process) or dask ({what}).")


LakeOption = lake_option()
#: the formats of a query result (nightlake.query.output)
FormatOption = format_option(
    "table, csv, tsv, json, jsonl, parquet, arrow, ecsv, fits or votable (default: from "
    "-o's extension, else table on a terminal and csv otherwise)."
)
TableOrJsonOption = format_option("table or json.", "table")
OutputOption = output_option("Write the result to this file (atomically) instead of stdout.")
#: ``--db`` of the commands that work on the database alone (detregister, history)
DbOption = db_option(DB_HELP, envvar=DB_ENV)
#: the database as the argument of ``detregister check|adopt``
DbArgument = typer.Argument(None, envvar=DB_ENV, show_default=False, help=DB_HELP)
DbLockOption = lock_timeout_option("the writer lock")
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
SchedulerOption = typer.Option(
    None,
    "--scheduler",
    help="Dask scheduler to join (tcp://host:8786); the lake must be on a filesystem every "
    "worker sees.",
)
WorkersOption = typer.Option(
    None, "--workers", help="Start a local Dask cluster of N worker processes (default 2)."
)
