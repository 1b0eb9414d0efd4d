"""Commands about detrends in the lake: ``detsearch``, ``sync``, ``resolve``.

``nightlake detsearch`` hands its arguments untouched to :func:`nightlake.cli.detsearch.run`, the
same code as the fast ``detsearch`` console script (argparse; Elixir's single-dash spelling).
"""

from __future__ import annotations

from pathlib import Path

import typer

from nightlake.cli.options import (
    LakeOption,
    SchedulerOption,
    WorkersOption,
    executor_option,
    lock_timeout_option,
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
    db: Path | None = typer.Option(
        None,
        "--db",
        help="DetReg database (default: the one the lake is tied to, else the one already "
        "mirrored, else $NIGHTLAKE_DETREG); the lake is tied to it.",
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
    from nightlake.lake import Lake

    result = sync_mirror(Lake(lake), db, lock_timeout=lock_timeout, force=force)
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
    detrend_type: str = typer.Option(..., "--type", help="bias, dark, flat, fringe or mask."),
    mode: str = typer.Option("exact", "--mode", help="exact or recent."),
    output: Path = typer.Option(..., "-o", "--output", help="Parquet file to write."),
    lake: Path | None = LakeOption,
    as_of: str | None = typer.Option(
        None,
        "--as-of",
        help="Resolve against the database as it was at this time (ISO-8601 UTC or Unix "
        "seconds), replayed from its journal.",
    ),
    db: Path | None = typer.Option(
        None,
        "--db",
        help="With --as-of: the DetReg database to replay (default: the lake's).",
    ),
    executor: str = executor_option(
        "a Dask cluster; -o becomes a directory of part-NNNNN.parquet files"
    ),
    scheduler: str | None = SchedulerOption,
    workers: int | None = WorkersOption,
) -> None:
    """Assign a detrend to every image of the lake and write the result to Parquet."""
    from nightlake.detrends.rules import DETREND_TYPES, MODES, write_assignments
    from nightlake.lake import Lake
    from nightlake.scaleout import executor as make_executor

    if detrend_type not in DETREND_TYPES:
        raise UsageError(f"--type {detrend_type!r}: expected one of {', '.join(DETREND_TYPES)}")
    if mode not in MODES:
        raise UsageError(f"--mode {mode!r}: expected exact or recent")
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
