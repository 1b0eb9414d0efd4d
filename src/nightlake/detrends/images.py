"""Science images as resolution sees them: CCD, filter, exposure time and time from FITS headers.

Headers are read with :mod:`nightlake.fits` rather than astropy.io.fits, so that ``detsearch``
starts fast; astropy is imported only to convert a time that is not in UTC (``TIMESYS`` TAI,
TT, …) or that falls on a leap second. The time rule:

- ``MJD-OBS`` if present, else ``DATE-OBS`` (with ``TIME-OBS`` or ``UTC-OBS`` when DATE-OBS
  holds only the date), in the scale named by ``TIMESYS`` (default UTC);
- converted to Unix (POSIX) microseconds: the UTC calendar date and clock time, counting
  86400 s per day, a leap second (23:59:60.x) falling on the first second of the next day.
  For UTC input this is arithmetic; on a day that ends with a leap second an MJD(UTC) day
  fraction counts 86401 s (ERFA's convention, which astropy follows). Other scales go
  through astropy (``Time(...).utc``, leap seconds from astropy-iers-data), then the same
  arithmetic on the UTC calendar time. (astropy's own ``Time.unix`` stretches leap-second
  days instead, so it differs from POSIX by up to 1 s on those 27 days.)

A multi-extension file (``mef``) holds one CCD per extension: the extension whose ``CCDNUM``
(or the number ending its ``EXTNAME``) is the CCD is read, on top of the primary header
(extension keywords win). A ``split`` file is one CCD; its primary header (plus the first
extension when the primary holds no data) is read.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import IO

from nightlake.detrends.rules import Image
from nightlake.detrends.times import iso_to_unix_us
from nightlake.errors import FormatError, InputError
from nightlake.fits import headers as fits_headers

UNIX_EPOCH_MJD = 40587
LAYOUTS = ("split", "mef")

#: MJDs of the UTC days that ended with a (positive) leap second, 1972-06-30 … 2016-12-31.
#: tests/resolve/test_images.py checks this against astropy's current leap-second table.
LEAP_SECOND_DAYS = frozenset(
    (
        41498,
        41682,
        42047,
        42412,
        42777,
        43143,
        43508,
        43873,
        44238,
        44785,
        45150,
        45515,
        46246,
        47160,
        47891,
        48256,
        48803,
        49168,
        49533,
        50082,
        50629,
        51178,
        53735,
        54831,
        56108,
        57203,
        57753,
    )
)

_SCALES = {
    "UTC": "utc",
    "UT": "utc",
    "Z": "utc",
    "TAI": "tai",
    "TT": "tt",
    "TDT": "tt",
    "ET": "tt",
    "TDB": "tdb",
    "TCG": "tcg",
    "TCB": "tcb",
    "UT1": "ut1",
    "GPS": "gps",
}


# -- headers ----------------------------------------------------------------------------------


def _open(path: str) -> IO[bytes]:
    handle = open(path, "rb")
    if handle.read(2) == b"\x1f\x8b":
        handle.close()
        return gzip.open(path, "rb")
    handle.seek(0)
    return handle


def read_header(
    path: str | os.PathLike[str], *, ccd: int | None = None, layout: str | None = None
) -> Mapping[str, object]:
    """The header that describes ``ccd`` of the image at ``path`` (see the module docstring).

    ``layout`` is 'split', 'mef' or None (mef when a CCD is given and the file has several
    extensions, split otherwise).
    """
    path = str(path)
    try:
        with _open(path) as handle:
            headers = (header.cards for header in fits_headers(handle, path))
            primary = next(headers)  # fits_headers raises for a file without one
            if layout == "mef" or (layout is None and ccd is not None):
                if layout == "mef" and ccd is None:
                    raise FormatError(path, "a multi-extension (mef) image needs the CCD number")
                extensions = []
                for ext in headers:
                    extensions.append(ext)
                    if _ccd_of(ext) == ccd:
                        return primary | ext
                if layout == "mef" or len(extensions) > 1:
                    raise FormatError(
                        path,
                        f"no extension for ccd {ccd} (looked at CCDNUM and "
                        f"EXTNAME of {len(extensions)} extensions)",
                    )
                if extensions and not primary.get("NAXIS"):
                    return primary | extensions[0]
                return primary
            if not primary.get("NAXIS"):
                ext = next(headers, None)
                if ext is not None:
                    return primary | ext
            return primary
    except (OSError, EOFError) as exc:
        if isinstance(exc, OSError) and exc.filename:
            raise InputError(path, exc.strerror or str(exc)) from exc
        raise FormatError(path, f"unreadable FITS file ({exc})") from exc


def _ccd_of(header: Mapping[str, object]) -> int | None:
    value = header.get("CCDNUM")
    if isinstance(value, int):
        return value
    match = re.search(r"(\d+)$", str(header.get("EXTNAME") or ""))
    return int(match.group(1)) if match else None


# -- times ----------------------------------------------------------------------------------


def _scale(header: Mapping[str, object], path: str) -> str:
    name = str(header.get("TIMESYS") or "UTC").strip().upper()
    if name not in _SCALES:
        raise FormatError(
            path,
            f"TIMESYS {name!r} is not a time scale nightlake knows "
            f"(expected one of {', '.join(sorted(_SCALES))})",
        )
    return _SCALES[name]


def _astropy_unix_us(value, fmt: str, scale: str, path: str) -> int:
    """Unix microseconds of a time in any scale, via astropy's UTC calendar time."""
    from astropy.time import Time
    from astropy.utils import iers

    iers.conf.auto_download = False
    try:
        if scale == "gps":  # GPS = TAI - 19 s exactly
            t = Time(value, format=fmt, scale="tai") + 19.0 / 86400
        else:
            t = Time(value, format=fmt, scale=scale)
        utc = t.utc
        utc.precision = 6
        text = str(utc.isot)
    except Exception as exc:  # astropy raises many kinds for a bad value
        raise FormatError(
            path, f"cannot convert the image time {value!r} ({scale}): {exc}"
        ) from exc
    return iso_to_unix_us(text)


def mjd_to_unix_us(mjd: float) -> int:
    """Unix microseconds of an MJD in UTC (a leap-second day's fraction counts 86401 s)."""
    day = int(mjd // 1)
    length = 86_401_000_000 if day in LEAP_SECOND_DAYS else 86_400_000_000
    return (day - UNIX_EPOCH_MJD) * 86_400_000_000 + round((mjd - day) * length)


def image_time_us(header: Mapping[str, object], path: str) -> int:
    """The image time from a header (MJD-OBS, else DATE-OBS [+TIME-OBS/UTC-OBS]) in Unix µs."""
    scale = _scale(header, path)
    mjd = header.get("MJD-OBS")
    if isinstance(mjd, (int, float)) and not isinstance(mjd, bool):
        if scale == "utc":
            return mjd_to_unix_us(float(mjd))
        return _astropy_unix_us(float(mjd), "mjd", scale, path)
    date = header.get("DATE-OBS")
    if not isinstance(date, str) or not date.strip():
        raise FormatError(path, "no image time in the header (expected MJD-OBS or DATE-OBS)")
    date = date.strip()
    if "T" not in date:
        clock = header.get("TIME-OBS") or header.get("UTC-OBS")
        if isinstance(clock, str) and clock.strip():
            date = f"{date}T{clock.strip()}"
    try:
        micros = iso_to_unix_us(date)
    except ValueError as exc:
        raise FormatError(path, f"DATE-OBS {date!r} is not an ISO-8601 time") from exc
    if scale == "utc":
        return micros
    return _astropy_unix_us(date.rstrip("Z"), "isot" if "T" in date else "iso", scale, path)


# -- images ---------------------------------------------------------------------------------


def band_of(filter_name: str | None) -> str | None:
    """The short band of a physical filter name: its first word ('VR DECam c0007 …' → 'VR');
    None for an empty or blank name. The macro ``filter_band`` is the same rule in SQL."""
    import re

    found = re.search(r"[^ \t\n\f\r]+", filter_name or "")
    return found.group(0) if found else None


def image_from_header(
    header: Mapping[str, object], path: str, *, ccd: int | None = None, time_us: int | None = None
) -> Image:
    """An :class:`Image` from a header: CCDNUM (unless ``ccd``), FILTER, EXPTIME, the time."""
    if ccd is None:
        value = header.get("CCDNUM")
        ccd = value if isinstance(value, int) and not isinstance(value, bool) else None
    filt = header.get("FILTER")
    filt = str(filt).strip() if filt not in (None, "") else None
    exptime = header.get("EXPTIME")
    exptime = (
        float(exptime)
        if isinstance(exptime, (int, float)) and not isinstance(exptime, bool)
        else None
    )
    if time_us is None:
        time_us = image_time_us(header, path)
    return Image(
        ccd=ccd, time_us=time_us, filter=filt, band=band_of(filt), exptime=exptime, name=path
    )


def read_image(
    path: str | os.PathLike[str],
    *,
    ccd: int | None = None,
    layout: str | None = None,
    filter: str | None = None,
    time_us: int | None = None,
    exptime: float | None = None,
) -> Image:
    """The image at ``path`` (one CCD of it), with any of its fields overridden."""
    path = str(path)
    header = read_header(path, ccd=ccd, layout=layout)
    image = image_from_header(header, path, ccd=ccd, time_us=time_us)
    if filter is not None:
        image = replace(image, filter=filter, band=band_of(filter))
    if exptime is not None:
        image = replace(image, exptime=exptime)
    return image
