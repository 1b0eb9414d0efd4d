"""Commands that build the lake: ``convert``."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import typer

from nightlake.cli.options import (
    LakeOption,
    SchedulerOption,
    WorkersOption,
    executor_option,
    lock_timeout_option,
)
from nightlake.cli.progress import Progress
from nightlake.cli.root import app, debug_enabled, report_error


@app.command()
def convert(
    sources: list[str] = typer.Argument(
        ..., help="Collection files, directories of them, joined.collection, sharded trees, globs."
    ),
    lake: Path | None = LakeOption,
    partition_by: str = typer.Option(
        "target,night",
        "--partition-by",
        help="Partition levels: target,night (one file per night/target) or target,night,detector.",
    ),
    time_scale: str = typer.Option("tai", "--time-scale", help="Time scale of mjd: tai or utc."),
    target: str | None = typer.Option(
        None,
        "--target",
        help="Target for files with neither a fieldname column nor a telling name.",
    ),
    night: str | None = typer.Option(
        None,
        "--night",
        help="Night (YYYYMMDD) for files with neither a night column nor a telling name.",
    ),
    force: bool = typer.Option(False, "--force", help="Rewrite every partition, changed or not."),
    lock_timeout: float = lock_timeout_option("another convert on the same lake"),
    executor: str = executor_option("sources read and partitions written on a Dask cluster"),
    scheduler: str | None = SchedulerOption,
    workers: int | None = WorkersOption,
) -> None:
    """Convert ECSV image collections into the lake (incremental: unchanged sources are skipped)."""
    from nightlake.ingest.convert import ConvertOptions, prefer_jemalloc
    from nightlake.ingest.convert import convert as run_convert
    from nightlake.lake import LakeDirectory
    from nightlake.scaleout import executor as make_executor

    prefer_jemalloc()
    options = ConvertOptions(
        partition_by=tuple(p.strip() for p in partition_by.split(",") if p.strip()),
        time_scale=time_scale.lower(),
        force=force,
        target=target,
        night=night,
        lock_timeout=lock_timeout,
    )
    the_lake = LakeDirectory(lake)
    with make_executor(executor, scheduler=scheduler, workers=workers) as runner:
        with Progress() as progress:
            report = run_convert(
                the_lake,
                sources,
                options,
                progress=progress.update if progress.active else None,
                executor=runner if runner.name != "local" else None,  # local: a thread per core
            )
    if report.renames:
        pairs = ", ".join(f"{orig} -> {new}" for new, orig in sorted(report.renames.items()))
        typer.echo(
            f"nightlake: warning: column names that differ only in case were renamed "
            f"(DuckDB is case-insensitive): {pairs}",
            err=True,
        )
    for _, error in report.failed:
        if debug_enabled():
            traceback.print_exception(error, file=sys.stderr)
        report_error("nightlake", str(error))
    removed = f", {len(report.removed)} removed" if report.removed else ""
    typer.echo(
        f"{the_lake.path}: {len(report.written)} partition(s) written ({report.rows_written} rows)"
        f"{removed} from {report.sources_read} source(s) read; {report.unchanged} unchanged "
        f"source(s) skipped; {len(report.failed)} failed"
    )
    if report.failed:
        raise typer.Exit(1)


@app.command()
def compact(
    lake: Path | None = LakeOption,
    lock_timeout: float = lock_timeout_option("another writer on the same lake"),
) -> None:
    """Merge per-night partitions into a few bounded parts per year; later converts keep it so."""
    from nightlake.ingest.compact import compact as run_compact
    from nightlake.lake import LakeDirectory

    the_lake = LakeDirectory(lake)
    written = run_compact(the_lake, lock_timeout=lock_timeout)
    typer.echo(f"{the_lake.path}: {len(written)} compacted file(s) written")
