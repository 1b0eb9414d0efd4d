"""``images-at``: which images cover a position on the sky (or come within a radius of it).

Parsing and printing only; the geometry is the SQL of ``sql/50_sky.sql``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from nightlake.cli.options import FormatOption, LakeOption, OutputOption
from nightlake.cli.results import run_to_output
from nightlake.cli.root import app
from nightlake.errors import UsageError

COLUMNS = "visit, detector, night, target, band, mjd, exposureTime, ra, dec"


def parse_position(ra: str, dec: str) -> tuple[float, float]:
    """RA/Dec in degrees (``150.1 2.2``) or sexagesimal (``10h00m28.6s +02d12m21s``,
    ``10:00:28.6 +02:12:21``: RA in hours) through astropy."""
    import warnings

    from astropy import units as u
    from astropy.coordinates import Angle, SkyCoord

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if _is_number(ra) and _is_number(dec):
                coord = SkyCoord(float(ra) * u.deg, float(dec) * u.deg)
            else:
                ra_unit = u.deg if _is_number(ra) or "d" in ra.lower() else u.hourangle
                coord = SkyCoord(Angle(ra, unit=ra_unit), Angle(dec, unit=u.deg))
    except (ValueError, TypeError) as exc:
        raise UsageError(f"cannot read the position {ra!r} {dec!r}: {exc}") from None
    return float(coord.ra.deg), float(coord.dec.deg)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# a negative declination (-13.17, -13:10:00) is an argument, not an unknown option
@app.command("images-at", context_settings={"ignore_unknown_options": True})
def images_at(
    ra: str = typer.Argument(
        ..., help="Right ascension: degrees, or sexagesimal hours (10h00m28.6s, 10:00:28.6)."
    ),
    dec: str = typer.Argument(
        ..., help="Declination: degrees, or sexagesimal (+02d12m21s, +02:12:21)."
    ),
    radius: float | None = typer.Option(
        None,
        "--radius",
        help="Also images within this many degrees of the position.",
        show_default=False,
    ),
    night: list[str] = typer.Option(
        [], "--night", help="Only this night (repeatable): --night 20190402.", show_default=False
    ),
    all_columns: bool = typer.Option(
        False, "--all-columns", help="Every column of images, not the summary."
    ),
    lake: Path | None = LakeOption,
    fmt: str | None = FormatOption,
    output: Path | None = OutputOption,
) -> None:
    """Images whose footprint contains RA DEC (or comes within --radius degrees of it)."""
    from nightlake.query.lake import Lake

    if radius is not None and not radius >= 0:
        raise UsageError(f"--radius must be a number of degrees >= 0, not {radius}")
    ra_deg, dec_deg = parse_position(ra, dec)
    params = {"ra": ra_deg, "dec": dec_deg}
    columns = "*" if all_columns else COLUMNS
    if radius is None:
        query = f"SELECT {columns} FROM images_at($ra, $dec)"
    else:
        query = f"SELECT {columns}, distance_deg FROM images_in_cone($ra, $dec, $radius)"
        params["radius"] = radius
    if night:
        query += " WHERE night IN (SELECT unnest($nights))"
        params["nights"] = list(night)
    query += " ORDER BY night, visit, detector"
    run_to_output(Lake(lake), query, params, fmt, output)
