"""Commands about detrends in the lake: ``detsearch``, ``sync``, ``resolve``.

``nightlake detsearch`` hands its arguments untouched to :func:`nightlake.cli.detsearch.run`, the
same code as the fast ``detsearch`` console script (argparse; Elixir's single-dash spelling).
"""

from __future__ import annotations

from pathlib import Path

import typer

from nightlake.cli.options import (
    AsOfOption,
    LakeOption,
    SchedulerOption,
    WorkersOption,
    changes_format_option,
    db_option,
    executor_option,
    lock_timeout_option,
    output_option,
)
from nightlake.cli.root import app
from nightlake.errors import UsageError


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def detsearch(ctx: typer.Context) -> None:
    """Find the detrend for an image, or list records (see: nightlake detsearch --help)."""
    from nightlake.cli.detsearch import run

    status = run(ctx.args, prog="nightlake detsearch")
    if status:
        raise typer.Exit(status)


@app.command()
def sync(
    db: Path | None = db_option(
        "DetReg database (default: the one the lake is tied to, else the one already "
        "mirrored, else $NIGHTLAKE_DETREG); the lake is tied to it."
    ),
    lake: Path | None = LakeOption,
    force: bool = typer.Option(
        False, "--force", help="Rewrite the mirror even if it is up to date."
    ),
    lock_timeout: float = lock_timeout_option("the lake lock"),
) -> None:
    """Mirror the DetReg database into the lake (LAKE/detrends/type=<name>/…parquet) and tie
    the lake to it, so that detregister add/delete refresh the mirror."""
    from nightlake.detrends.sync import sync as sync_mirror
    from nightlake.lake import LakeDirectory

    result = sync_mirror(LakeDirectory(lake), db, lock_timeout=lock_timeout, force=force)
    if result.warning:
        typer.echo(f"nightlake: warning: {result.warning}", err=True)
    if result.skipped:
        typer.echo(f"detrend mirror is up to date ({result.nrecord} records from {result.db_path})")
    else:
        per_type = ", ".join(f"{n} {t}" for t, n in sorted(result.counts.items())) or "no records"
        typer.echo(
            f"synced {result.nrecord} records from {result.db_path} into "
            f"{result.directory} ({per_type})"
        )


@app.command("resolve")
def resolve_cmd(
    detrend_type: str | None = typer.Option(
        None,
        "--type",
        help="bias, dark, flat, fringe or mask (with --changed-since/--diff: only this type; "
        "default: every type whose records changed).",
    ),
    mode: str | None = typer.Option(
        None,
        "--mode",
        help="exact or recent (default exact; with --changed-since/--diff: both).",
    ),
    output: Path | None = output_option(
        "Parquet file to write (with --changed-since/--diff: the list of changed images, "
        "--format json or parquet)."
    ),
    lake: Path | None = LakeOption,
    as_of: str | None = AsOfOption,
    changed_since: str | None = typer.Option(
        None,
        "--changed-since",
        help="List the images whose detrend differs between the database as of this time "
        "and now (the reprocessing list).",
    ),
    diff: tuple[str, str] | None = typer.Option(
        None,
        "--diff",
        metavar="T1 T2",
        help="List the images whose detrend differs between the database as of T1 and as of T2.",
    ),
    fmt: str = changes_format_option("With --changed-since/--diff"),
    db: Path | None = db_option(
        "With --as-of/--changed-since/--diff: the DetReg database to replay (default: the lake's)."
    ),
    executor: str = executor_option(
        "a Dask cluster; -o becomes a directory of part-NNNNN.parquet files"
    ),
    scheduler: str | None = SchedulerOption,
    workers: int | None = WorkersOption,
) -> None:
    """Assign a detrend to every image of the lake and write the result to Parquet; or list
    the images whose detrend changed between two states of the database."""
    from nightlake.detrends.rules import DETREND_TYPES, MODES

    if detrend_type is not None and detrend_type not in DETREND_TYPES:
        raise UsageError(f"--type {detrend_type!r}: expected one of {', '.join(DETREND_TYPES)}")
    if mode is not None and mode not in MODES:
        raise UsageError(f"--mode {mode!r}: expected exact or recent")
    if changed_since is not None or diff is not None:
        if as_of is not None or executor != "local" or scheduler or workers is not None:
            raise UsageError(
                "--changed-since/--diff take neither --as-of nor --executor/--scheduler/--workers"
            )
        _changes_cmd(lake, db, detrend_type, mode, changed_since, diff, fmt, output)
        return
    if detrend_type is None:
        raise UsageError("--type is needed (bias, dark, flat, fringe or mask)")
    if output is None:
        raise UsageError("-o FILE is needed: the Parquet file to write")
    _resolve_all(
        lake, db, detrend_type, mode or "exact", as_of, output, executor, scheduler, workers
    )


def _resolve_all(lake, db, detrend_type, mode, as_of, output, executor, scheduler, workers) -> None:
    from nightlake.detrends.rules import write_assignments
    from nightlake.query.lake import Lake
    from nightlake.scaleout import executor as make_executor

    if db is not None and as_of is None:
        raise UsageError("--db goes with --as-of (without it the lake's mirror answers)")
    when = None
    if as_of is not None:
        from nightlake.detrends.history import parse_as_of

        when = parse_as_of(as_of)
    if executor == "local" and scheduler is None and workers is None:
        rows, found = write_assignments(Lake(lake), detrend_type, mode, output, as_of=when, db=db)
    else:
        if when is not None:
            raise UsageError(
                "--as-of resolves in this process: drop --executor/--scheduler/--workers"
            )
        from nightlake.detrends.chunks import write_assignments_chunked

        with make_executor(executor, scheduler=scheduler, workers=workers) as runner:
            rows, found = write_assignments_chunked(Lake(lake), detrend_type, mode, output, runner)
    typer.echo(f"wrote {rows} images ({found} with a {detrend_type}, {mode} mode) to {output}")


def _changes_cmd(lake, db, detrend_type, mode, changed_since, diff, fmt, output) -> None:
    from nightlake.detrends.changes import changes_between
    from nightlake.detrends.history import lake_db, parse_as_of
    from nightlake.detrends.rules import MODES
    from nightlake.query.lake import Lake

    if changed_since is not None and diff is not None:
        raise UsageError("give --changed-since TIME or --diff T1 T2, not both")
    check_changes_output(fmt, output)
    since, until = (changed_since, None) if diff is None else diff
    the_lake = Lake(lake)
    changes = changes_between(
        the_lake,
        lake_db(the_lake, db),
        parse_as_of(since),
        None if until is None else parse_as_of(until),
        types=None if detrend_type is None else [detrend_type],
        modes=MODES if mode is None else [mode],
    )
    emit_changes(changes, fmt, output, "changed")


CHANGES_FORMATS = ("table", "json", "parquet")


def check_changes_output(fmt: str, output: Path | None) -> None:
    """The output options of a list of changed images (checked before the work is done)."""
    if fmt not in CHANGES_FORMATS:
        raise UsageError(f"--format {fmt!r}: expected table, json or parquet")
    if fmt == "table" and output is not None:
        raise UsageError("-o writes the full list: give --format json or parquet")
    if fmt == "parquet" and output is None:
        raise UsageError("--format parquet needs -o FILE")


def emit_changes(changes, fmt: str, output: Path | None, verb: str) -> None:
    """Print the summary table of a list of changed images (``--format table``), or write the
    full list as JSON or Parquet (stdout or ``-o``), its count on stderr."""
    import json

    from nightlake.cli.results import emit
    from nightlake.detrends.changes import KEY, summary
    from nightlake.query.output import write_table

    info = json.loads(changes.schema.metadata[KEY])
    said = (
        f"{changes.num_rows} image detrend(s) {verb} ({info['before']['label']} → "
        f"{info['after']['label']})"
    )
    if fmt == "table":
        table = summary(changes)
        rows = [["(none)" if v is None else str(v) for v in r.values()] for r in table.to_pylist()]
        if rows:
            out: list[str] = []
            write_table(table.column_names, [rows], out.append, cell_width=None)
            typer.echo("".join(out), nl=False)
        typer.echo(said)
        return
    emit(changes.to_reader(), fmt, output)
    typer.echo(said + (f": written to {output}" if output is not None else ""), err=True)
