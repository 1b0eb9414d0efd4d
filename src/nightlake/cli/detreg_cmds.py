"""``nightlake detregister …`` and the console script ``detregister``: init, add, delete, list,
check.

The console script also takes the Elixir spellings: single-dash long options (``-type flat
-ccd 5``) and no subcommand (``detregister -type flat master.fits`` means ``add``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from nightlake.cli.options import (
    DB_ENV,
    AsOfOption,
    DbArgument,
    DbLockOption,
    DbOption,
    changes_format_option,
    format_option,
    lake_option,
    output_option,
)
from nightlake.cli.progress import Progress
from nightlake.cli.root import app, make_app
from nightlake.errors import UsageError

detregister = make_app(help="Register, delete and list detrends in the DetReg database.")
app.add_typer(detregister, name="detregister")

PROGRESS_MIN_FILES = 50


PreviewOption = typer.Option(
    False,
    "--preview",
    help="Change nothing: list the lake's images (--lake) whose detrend the change would change.",
)
PreviewLakeOption = lake_option("With --preview: the lake whose images to resolve.")
PreviewModeOption = typer.Option(
    None, "--mode", show_default=False, help="With --preview: exact or recent (default: both)."
)
PreviewFormatOption = changes_format_option("With --preview")
PreviewOutputOption = output_option(
    "With --preview: write the full list here (--format json or parquet)."
)


def _preview_args(preview: bool, lake: Path | None, mode: str | None, fmt: str, output) -> tuple:
    """Check the --preview options; the lake and modes a preview resolves."""
    from nightlake.cli.detrend_cmds import check_changes_output
    from nightlake.detrends.rules import MODES

    if not preview:
        if lake is not None or mode is not None or output is not None or fmt != "table":
            raise UsageError("--lake, --mode, --format and -o go with --preview")
        return None, None
    if lake is None:
        raise UsageError("--preview resolves the images of a lake: give --lake LAKE")
    if mode is not None and mode not in MODES:
        raise UsageError(f"--mode {mode!r}: expected exact or recent")
    check_changes_output(fmt, output)
    from nightlake.query.lake import Lake

    the_lake = Lake(lake)
    if not the_lake.images_dir.is_dir():
        raise UsageError(f"--lake {lake}: no lake images here")
    return the_lake, (MODES if mode is None else (mode,))


def _db(db: Path | None) -> Path:
    if db is None:
        raise UsageError(f"no database: give --db DB or set ${DB_ENV}")
    return db


def _type(value: str | None) -> str | None:
    if value is None:
        return None
    from nightlake.detrends.detreg.headers import detrend_type

    name = detrend_type(value)
    if name is None:
        raise UsageError(
            f"--type: unknown detrend type {value!r} (expected bias, dark, flat, fringe or mask)"
        )
    return name


@detregister.command()
def init(
    db: Path = typer.Argument(..., help="Path of the new database."),
    layout: str = typer.Option("LP64", "--layout", help="C data model: LP64 or ILP32."),
    byteorder: str = typer.Option("little", "--byteorder", help="little or big."),
    forbid_overlaps: bool = typer.Option(
        False, "--forbid-overlaps", help="Make every add refuse a record overlapping its class."
    ),
    lock_timeout: float = DbLockOption,
) -> None:
    """Create an empty database (LP64 little-endian unless told otherwise)."""
    from nightlake.detrends.detreg import init_db

    if layout.upper() not in ("LP64", "ILP32") or byteorder.lower() not in ("little", "big"):
        raise UsageError(
            f"--layout must be LP64 or ILP32 and --byteorder little or big, "
            f"not {layout!r}/{byteorder!r}"
        )
    init_db(
        db,
        layout=layout.upper(),
        byteorder=byteorder.lower(),
        forbid_overlaps=forbid_overlaps,
        lock_timeout=lock_timeout,
    )
    typer.echo(f"created empty DetReg database {db}")


@detregister.command()
def add(
    files: list[Path] = typer.Argument(..., help="Master images (FITS) to register."),
    db: Path | None = DbOption,
    type_: str | None = typer.Option(None, "--type", help="Override IMAGETYP/OBSTYPE."),
    filter_: str | None = typer.Option(None, "--filter", help="Override FILTER."),
    ccd: int | None = typer.Option(None, "--ccd", help="Override CCDNUM."),
    exptime: float | None = typer.Option(None, "--exptime", help="Override EXPTIME (darks)."),
    tstart: str | None = typer.Option(None, "--tstart", help="Override TV_START (ISO or Unix s)."),
    tstop: str | None = typer.Option(
        None, "--tstop", help="Override TV_STOP (ISO, Unix s, or 'never')."
    ),
    sigma: float | None = typer.Option(None, "--sigma", help="Override SIGMA."),
    clipsigma: float | None = typer.Option(None, "--clipsigma", help="Override CLIPSIG."),
    treg: str | None = typer.Option(None, "--treg", help="Registration time (default now)."),
    lock_timeout: float = DbLockOption,
    preview: bool = PreviewOption,
    lake: Path | None = PreviewLakeOption,
    mode: str | None = PreviewModeOption,
    fmt: str = PreviewFormatOption,
    output: Path | None = PreviewOutputOption,
) -> None:
    """Register master images: one record per image (per extension of a MEF)."""
    from nightlake.detrends.detreg import register
    from nightlake.detrends.detreg.headers import Overrides, entries_from_fits

    path = _db(db)
    the_lake, modes = _preview_args(preview, lake, mode, fmt, output)
    if type_ is not None:
        _type(type_)
    overrides = Overrides(
        type=type_,
        filter=filter_,
        ccd=ccd,
        exptime=exptime,
        tstart=tstart,
        tstop=tstop,
        sigma=sigma,
        clipsigma=clipsigma,
        treg=treg,
    )
    _warn_non_utf8(files)
    entries = []
    with Progress(plain=True, min_total=PROGRESS_MIN_FILES) as progress:
        for file in files:
            entries.extend(entries_from_fits(file, overrides))
            progress.advance("reading headers", len(files))
    if preview:
        from nightlake.cli.detrend_cmds import emit_changes
        from nightlake.detrends.changes import preview_add

        emit_changes(preview_add(the_lake, path, entries, modes=modes), fmt, output, "would change")
        return
    result = register(path, entries, lock_timeout=lock_timeout)
    typer.echo(
        f"registered {len(entries)} record(s) from {len(files)} file(s) in {path} "
        f"({len(result)} records)"
    )
    _refresh_tied(path, lock_timeout)


@detregister.command()
def delete(
    db: Path | None = DbOption,
    filename: str | None = typer.Option(None, "--filename", help="Stored path to remove."),
    type_: str | None = typer.Option(None, "--type", help="Detrend type to remove."),
    ccd: int | None = typer.Option(None, "--ccd", help="Only this CCD."),
    filter_: str | None = typer.Option(None, "--filter", help="Only this filter name."),
    exptime: float | None = typer.Option(
        None, "--exptime", help="Only darks of this exptime (seconds, rounded as add rounds)."
    ),
    tstart: str | None = typer.Option(None, "--tstart", help="Only this validity start."),
    tstop: str | None = typer.Option(None, "--tstop", help="Only this validity end/'never'."),
    all_: bool = typer.Option(False, "--all", help="Allow deleting every record."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what would go; change nothing."),
    lock_timeout: float = DbLockOption,
    preview: bool = PreviewOption,
    lake: Path | None = PreviewLakeOption,
    mode: str | None = PreviewModeOption,
    fmt: str = PreviewFormatOption,
    output: Path | None = PreviewOutputOption,
) -> None:
    """Remove matching records (by --filename, or by --type with narrowing options)."""
    from nightlake.detrends.detreg import Selection, delete_records
    from nightlake.detrends.detreg.headers import parse_time

    path = _db(db)
    the_lake, modes = _preview_args(preview, lake, mode, fmt, output)
    if (
        filename is None
        and type_ is None
        and any(v is not None for v in (ccd, filter_, exptime, tstart, tstop))
    ):
        raise UsageError(
            "--ccd/--filter/--exptime/--tstart/--tstop narrow a --type selection; give --type too"
        )
    selection = Selection(
        filename=filename,
        type=_type(type_),
        ccd=ccd,
        filter=filter_,
        exptime=None if exptime is None else round(exptime),
        tstart=None if tstart is None else parse_time(tstart, source="--tstart", field="--tstart"),
        tstop=None
        if tstop is None
        else parse_time(tstop, source="--tstop", field="--tstop", allow_never=True),
    )
    if preview:
        from nightlake.cli.detrend_cmds import emit_changes
        from nightlake.detrends.changes import preview_delete

        changes = preview_delete(the_lake, path, selection, allow_all=all_, modes=modes)
        emit_changes(changes, fmt, output, "would change")
        return
    after, removed, indices = delete_records(
        path, selection, dry_run=dry_run, allow_all=all_, lock_timeout=lock_timeout
    )
    if dry_run:
        typer.echo(f"would delete {len(removed)} record(s) from {path}:")
        if len(removed):
            typer.echo(_render(_rows(removed, after.filters, indices), "table"))
    else:
        typer.echo(f"deleted {len(removed)} record(s) from {path} ({len(after)} left)")
        _refresh_tied(path, lock_timeout)


def _warn_non_utf8(files: list[Path]) -> None:
    from nightlake.detrends.sync import non_utf8, shown

    for file in files:
        if non_utf8(file):
            typer.echo(
                f"detregister: warning: {shown(file)}: the path is not valid UTF-8; it is "
                "stored as its exact bytes (the lake shows it escaped in "
                "detrends.filename, exact in detrends.filename_bytes)",
                err=True,
            )


def _refresh_tied(db: Path, lock_timeout: float) -> None:
    """Re-sync the lakes tied to the database; a failure is a warning, the write stands."""
    from nightlake.detrends.sync import refresh_tied

    for done in refresh_tied(db, lock_timeout=lock_timeout):
        if done.warning:
            typer.echo(f"detregister: warning: {done.warning}", err=True)
        else:
            typer.echo(f"refreshed the detrend mirror of {done.lake}", err=True)


@detregister.command("list")
def list_(
    db: Path | None = DbOption,
    type_: str | None = typer.Option(None, "--type", help="Only this detrend type."),
    ccd: int | None = typer.Option(None, "--ccd", help="Only this CCD."),
    filter_: str | None = typer.Option(None, "--filter", help="Only this filter name."),
    fmt: str = format_option("table, csv or json.", "table"),
    as_of: str | None = AsOfOption,
) -> None:
    """Print the records (file order), optionally only some types/CCDs/filters."""
    from nightlake.detrends.detreg import Selection
    from nightlake.detrends.history import parse_as_of, read_as_of

    if fmt not in ("table", "csv", "json"):
        raise UsageError(f"--format must be table, csv or json, not {fmt!r}")
    database = read_as_of(_db(db), parse_as_of(as_of) if as_of is not None else None)
    mask = Selection(type=_type(type_), ccd=ccd, filter=filter_).mask(database)
    import numpy as np

    rows = _rows(database.records[mask], database.filters, np.flatnonzero(mask))
    typer.echo(_render(rows, fmt), nl=fmt == "json")


@detregister.command()
def check(
    db: Path | None = DbArgument,
    repair: bool = typer.Option(
        False,
        "--repair",
        help="Cut a torn journal tail; mark an entry that never took effect as abandoned.",
    ),
    keep_extra: bool = typer.Option(
        False,
        "--keep-extra",
        help="With --repair: keep whole records found after the "
        "ones NRECORD declares (NRECORD fixed).",
    ),
    lock_timeout: float = DbLockOption,
) -> None:
    """Verify header, sizes, records, the journal's hash chain and its last entry vs the file."""
    from nightlake.detrends.detreg.check import check_db, repair_db

    path = _db(db)
    if keep_extra and not repair:
        raise UsageError("--keep-extra changes the database: give --repair too")
    if repair:
        for line in repair_db(path, keep_extra=keep_extra, lock_timeout=lock_timeout):
            typer.echo(f"repaired: {line}")
    report = check_db(path, lock_timeout=lock_timeout)
    for problem in report.problems:
        typer.echo(problem)
    if not report.ok:
        raise typer.Exit(1)
    typer.echo(report.summary())


def _rows(records, filters, indices=None) -> list:
    from nightlake.detrends.detreg.record import DetRegRecord

    return [
        DetRegRecord.from_raw(rec, filters, int(indices[n]) if indices is not None else n)
        for n, rec in enumerate(records)
    ]


_CSV_COLUMNS = [
    "index",
    "type",
    "ccd",
    "filter",
    "filter_name",
    "tstart",
    "tstop",
    "treg",
    "sigma",
    "clipsigma",
    "flag1",
    "flag2",
    "filename",
]
_TABLE_COLUMNS = [
    "index",
    "type",
    "ccd",
    "filter",
    "tstart",
    "tstop",
    "treg",
    "sigma",
    "clipsigma",
    "filename",
]


def _render(records: list, fmt: str) -> str:
    if fmt == "json":
        import json

        rows = [{"index": r.index, **r.to_json()} for r in records]
        return json.dumps(
            [
                dict(r, tstop=None if rec.open_ended else r["tstop"])
                for r, rec in zip(rows, records)
            ],
            indent=1,
        )
    if fmt == "csv":
        import csv
        import io

        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(_CSV_COLUMNS)
        for rec in records:
            row = {"index": rec.index, **rec.to_json()}
            if rec.open_ended:
                row["tstop"] = None
            writer.writerow(["" if row[c] is None else row[c] for c in _CSV_COLUMNS])
        return out.getvalue()
    from nightlake.query.output import write_table

    out: list[str] = []
    cells = [[text[c] for c in _TABLE_COLUMNS] for text in (r.to_text() for r in records)]
    write_table(_TABLE_COLUMNS, [cells], out.append, cell_width=None)  # filenames whole
    return "".join(out)


# --------------------------------------------------------------------------------------------
# The console script

_LONG_OPTIONS = {
    "db",
    "type",
    "filter",
    "ccd",
    "exptime",
    "tstart",
    "tstop",
    "sigma",
    "clipsigma",
    "treg",
    "lock-timeout",
    "filename",
    "all",
    "dry-run",
    "format",
    "layout",
    "byteorder",
    "help",
    "repair",
    "keep-extra",
    "preview",
    "lake",
    "mode",
    "output",
}
_SUBCOMMANDS = {"init", "add", "delete", "list", "check", "adopt"}


def elixir_argv(argv: list[str]) -> list[str]:
    """Rewrite Elixir habits: ``-type`` -> ``--type``; no subcommand -> ``add``."""
    from nightlake.cli.detsearch import elixir_argv as single_dash

    out = single_dash(argv, _LONG_OPTIONS)
    if out and out[0] not in _SUBCOMMANDS and out[0] not in ("--help", "-h"):
        out.insert(0, "add")
    return out


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point of ``detregister``."""
    args = sys.argv[1:] if argv is None else list(argv)
    detregister(args=elixir_argv(args), prog_name="detregister")
