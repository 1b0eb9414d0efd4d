"""Commands that say why the detrend answers are what they are: ``explain``, ``audit``.

Parsing and printing only; the work is done by :mod:`nightlake.detrends.explain` and
:mod:`nightlake.detrends.audit` (both run the SQL macros of ``sql/45_explain.sql`` and
``sql/46_audit.sql``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from nightlake.cli.options import (
    AsOfOption,
    LakeOption,
    TableOrJsonOption,
    db_option,
    format_option,
    output_option,
)
from nightlake.cli.root import app
from nightlake.errors import UsageError


@app.command()
def explain(
    ccd_after_image: int | None = typer.Argument(
        None, metavar="[CCD]", help="CCD after --image FILE (Elixir spelling)."
    ),
    detrend_type: str = typer.Option(..., "--type", help="bias, dark, flat, fringe or mask."),
    mode: str = typer.Option("exact", "--mode", help="exact or recent."),
    image: Path | None = typer.Option(None, "--image", help="FITS image to explain."),
    layout: str | None = typer.Option(
        None, "--layout", help="split (one file per CCD) or mef (the CCD's extension)."
    ),
    visit: int | None = typer.Option(None, "--visit", help="A lake image: its visit ..."),
    detector: int | None = typer.Option(None, "--detector", help="... and its detector."),
    ccd: int | None = typer.Option(None, "--ccd", help="CCD (overrides the header's)."),
    filter: str | None = typer.Option(None, "--filter", help="Filter name (overrides)."),
    time: str | None = typer.Option(
        None, "--time", help="Image time, ISO-8601 UTC or Unix seconds (overrides)."
    ),
    exptime: float | None = typer.Option(None, "--exptime", help="Exposure time in s."),
    all_ccds: bool = typer.Option(False, "--all", help="Explain every CCD, not only the image's."),
    db: Path | None = db_option(
        "DetReg database (default: the lake's mirror, else $NIGHTLAKE_DETREG)."
    ),
    lake: Path | None = LakeOption,
    fmt: str = TableOrJsonOption,
    as_of: str | None = AsOfOption,
) -> None:
    """Every record of a type for one image, with why it was or was not chosen."""
    from dataclasses import replace

    from nightlake.cli.detsearch import time_option
    from nightlake.detrends.explain import FORMATS, explanation, write_explanations
    from nightlake.detrends.explain import explain as run_explain
    from nightlake.detrends.images import band_of
    from nightlake.detrends.rules import Image

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: expected table or json")
    if (visit is None) != (detector is None):
        raise UsageError("give --visit and --detector together (one image of the lake)")
    if visit is not None and image is not None:
        raise UsageError("give --image FILE or --visit/--detector, not both")
    con, source = _connection(db, lake, from_lake=visit is not None, as_of=as_of)
    if visit is not None:
        from nightlake.detrends.explain import lake_image

        img = lake_image(con, visit, detector)
    elif image is not None:
        from nightlake.detrends.images import read_image

        img = read_image(image, ccd=ccd if ccd is not None else ccd_after_image, layout=layout)
    else:
        if time is None:
            raise UsageError("give --image FILE, --visit V --detector D, or --time (with --ccd)")
        img = Image(ccd=ccd, time_us=None, name=None)
    overrides = {}
    if ccd is not None:
        overrides["ccd"] = ccd
    if filter is not None:
        overrides.update(filter=filter, band=band_of(filter))
    if time is not None:
        overrides["time_us"] = time_option(time)
    if exptime is not None:
        overrides["exptime"] = exptime
    img = replace(img, **overrides)
    table = run_explain(con, detrend_type, img, mode, all_ccds=all_ccds, source=source)
    write_explanations([explanation(table, img, detrend_type, mode)], fmt, sys.stdout)


def _connection(db: Path | None, lake: Path | None, *, from_lake: bool, as_of: str | None):
    """The connection and the name of its detrend table: the lake's mirror or ``--db``, or
    with ``as_of`` the database as of then (``--db``, else the lake's)."""
    from nightlake.cli.detsearch import open_db
    from nightlake.detrends.explain import add_db_records, db_connection
    from nightlake.query.lake import Lake

    if as_of is not None and db is None and (lake is not None or from_lake):
        from nightlake.detrends.history import AS_OF_TABLE, lake_db, parse_as_of, register_as_of

        when = parse_as_of(as_of)
        the_lake = Lake(lake)
        con = the_lake.connect()
        register_as_of(con, lake_db(the_lake), when)
        return con, AS_OF_TABLE
    if as_of is not None:
        records = open_db(str(db) if db is not None else None, as_of)
        if from_lake:
            con = Lake(lake).connect()
            return con, add_db_records(con, records)
        return db_connection(records), "detrends"
    if db is None and (lake is not None or from_lake):
        return Lake(lake).connect(), "detrends"
    records = open_db(str(db) if db is not None else None)
    if from_lake:  # the image from the lake, the records from --db
        con = Lake(lake).connect()
        return con, add_db_records(con, records)
    return db_connection(records), "detrends"


@app.command()
def audit(
    lake: Path | None = LakeOption,
    detrend_types: list[str] = typer.Option(
        [], "--type", help="Types to audit (repeatable; default: all)."
    ),
    mode: str = typer.Option("exact", "--mode", help="exact or recent (for the coverage)."),
    fail_on: list[str] = typer.Option(
        ["gap"], "--fail-on", help="Finding kinds that make the exit status 1 (repeatable)."
    ),
    fmt: str | None = format_option("table, json, parquet, … (default: from -o, else table/csv)."),
    output: Path | None = output_option("Write findings here."),
    check_files: bool = typer.Option(
        False, "--check-files", help="Also report record files that are missing or unreadable."
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="Also draw the coverage picture to this PNG."
    ),
    ccd: int | None = typer.Option(
        None, "--ccd", help="With --plot: draw this CCD's records one by one."
    ),
    as_of: str | None = AsOfOption,
    db: Path | None = db_option(
        "Audit this DetReg database as it is now (with --as-of: the one to replay) instead "
        "of the lake's mirror."
    ),
) -> None:
    """Findings about the detrend database and its coverage of the lake's images."""

    from nightlake.cli.results import emit
    from nightlake.detrends.audit import audit as run_audit
    from nightlake.detrends.audit import failing
    from nightlake.detrends.rules import DETREND_TYPES
    from nightlake.query.lake import Lake

    _check_audit_options(fail_on, ccd, plot, as_of, db)
    the_lake = Lake(lake)
    if plot is not None:
        from nightlake.query.export import refuse_inside_lake

        refuse_inside_lake(the_lake, plot)
        if not plot.resolve().parent.is_dir():
            raise UsageError(f"{plot}: the directory {plot.parent} does not exist")
    con = the_lake.connect()
    source = _audit_source(con, the_lake, as_of, db)
    findings = run_audit(
        con, detrend_types or DETREND_TYPES, mode, check_files=check_files, source=source
    )
    emit(findings.to_reader(), fmt, output)
    if plot is not None:
        from nightlake.detrends.coverage_plot import plot_coverage

        kinds = list(detrend_types or DETREND_TYPES)
        title = f"Detrend coverage ({mode} mode): {the_lake.path.resolve()}"
        plot_coverage(con, plot, kinds, mode, ccd=ccd, title=title)
        typer.echo(f"plot written to {plot}", err=True)
    if failing(findings, fail_on):
        raise typer.Exit(1)


def _check_audit_options(
    fail_on: list[str], ccd: int | None, plot: Path | None, as_of: str | None, db: Path | None
) -> None:
    """Refuse the option combinations of ``audit`` that cannot work, before any work."""
    from nightlake.detrends.audit import FINDINGS

    for kind in fail_on:
        if kind not in FINDINGS:
            raise UsageError(f"--fail-on {kind!r}: expected one of {', '.join(FINDINGS)}")
    if ccd is not None and plot is None:
        raise UsageError("--ccd draws one CCD of the coverage picture: give --plot FILE.png too")
    if plot is not None and (as_of is not None or db is not None):
        raise UsageError("--plot draws the mirror's coverage: it takes neither --as-of nor --db")


def _audit_source(con, the_lake, as_of: str | None, db: Path | None) -> str:
    """The records table to audit: the mirror's, the database replayed to ``as_of``, or the
    file ``db`` as it is now (mirrored or not)."""
    if as_of is not None:
        from nightlake.detrends.history import AS_OF_TABLE, lake_db, parse_as_of, register_as_of

        register_as_of(con, lake_db(the_lake, db), parse_as_of(as_of))
        return AS_OF_TABLE
    if db is not None:
        from nightlake.detrends.detreg import read_db
        from nightlake.detrends.sync import records_table

        con.register("detrends_db", records_table(read_db(db)))
        return "detrends_db"
    return "detrends"
