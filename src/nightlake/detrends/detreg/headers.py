"""Master-image FITS headers -> :class:`~nightlake.detrends.detreg.db.DetRegEntry` values.

Keywords read (each overridable from the command line):

=========  ==========================================================================
IMAGETYP   detrend type (else OBSTYPE): bias/zero, dark, flat (dome/sky/twilight…),
           fringe, mask/bpm — case-insensitive
FILTER     filter name (flat, fringe; ignored for bias and mask, which match any filter)
CCDNUM     CCD number
EXPTIME    exposure time in seconds, rounded (darks: stored in the filter field)
TV_START   validity start: ISO-8601 (UTC) or Unix seconds
TV_STOP    validity end (exclusive), same forms, or ``never`` (open-ended)
SIGMA      noise of the master (optional)
CLIPSIG    clipped noise of the master (optional)
=========  ==========================================================================

A multi-extension master gives one entry per image extension; each extension's keywords
override the primary header's.

Times: Unix time counts no leap seconds, so a UTC calendar time converts to Unix seconds with
plain calendar arithmetic (``calendar.timegm``); astropy's ``Time(...).unix`` agrees for every
instant except inside a leap second, which maps onto the following second here.
Fractional seconds are truncated toward the past.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from nightlake.detrends.detreg.db import DetRegEntry
from nightlake.detrends.detreg.format import MAX_FILENAME_BYTES, OPEN_ENDED, TYPE_CODES
from nightlake.errors import FormatError, InputError, one_line

_TYPE_SPELLINGS = {
    "bias": "bias",
    "zero": "bias",
    "biasframe": "bias",
    "masterbias": "bias",
    "dark": "dark",
    "darkframe": "dark",
    "masterdark": "dark",
    "flat": "flat",
    "flatfield": "flat",
    "domeflat": "flat",
    "skyflat": "flat",
    "twilightflat": "flat",
    "twiflat": "flat",
    "superflat": "flat",
    "starflat": "flat",
    "dflat": "flat",
    "sflat": "flat",
    "masterflat": "flat",
    "fringe": "fringe",
    "fringeframe": "fringe",
    "masterfringe": "fringe",
    "mask": "mask",
    "bpm": "mask",
    "badpixelmask": "mask",
    "badpixel": "mask",
    "badpix": "mask",
    "pixelmask": "mask",
}


def detrend_type(value: str) -> str | None:
    """Canonical type of an IMAGETYP/OBSTYPE/--type spelling ('Dome Flat' -> 'flat'), or None."""
    key = re.sub(r"[\s_\-]+", "", str(value)).lower()
    if key.isdigit() and int(key) in (1, 2, 3, 4, 5):
        return list(TYPE_CODES)[int(key) - 1]
    return _TYPE_SPELLINGS.get(key)


def parse_time(value: object, *, source: str, field: str, allow_never: bool = False) -> int:
    """ISO-8601 UTC or Unix seconds (number or numeric string) -> Unix seconds (floored)."""
    from nightlake.detrends.times import NEVER, parse_time_s

    where = f"field {field}"
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(source, f"{where}: expected a finite time, found {value!r}")
    try:
        seconds = parse_time_s(value, allow_never=allow_never)
    except ValueError:
        never = " or 'never'" if allow_never else ""
        raise InputError(
            source,
            f"{where}: expected ISO-8601 UTC (2014-09-01T00:00:00), Unix seconds{never}, "
            f"found {str(value).strip()!r}",
        ) from None
    if allow_never and isinstance(value, str) and value.strip().lower() in NEVER:
        return OPEN_ENDED
    if seconds < 0 or seconds >= OPEN_ENDED:
        raise InputError(source, f"{where}: {value!r} is outside 1970-01-01 .. 2**64-2 s")
    return seconds


@dataclass(frozen=True)
class Overrides:
    """Values given on the command line; they win over the header."""

    type: str | None = None
    filter: str | None = None
    ccd: int | None = None
    exptime: float | None = None
    tstart: str | None = None
    tstop: str | None = None
    sigma: float | None = None
    clipsigma: float | None = None
    treg: str | None = None


def _lookup(headers: list, key: str):
    for header in headers:  # extension first, then the primary
        if key in header and header[key] is not None and not _undefined(header[key]):
            return header[key]
    return None


def _undefined(value) -> bool:
    from astropy.io.fits.card import Undefined

    return isinstance(value, Undefined) or (isinstance(value, str) and not value.strip())


def entries_from_fits(
    path: str | os.PathLike, overrides: Overrides = Overrides(), *, now: int | None = None
) -> list[DetRegEntry]:
    """One entry per image HDU of a master (the primary if it holds the image)."""
    from astropy.io import fits

    path = Path(path)
    absolute = os.path.abspath(path)
    if len(absolute.encode("utf-8", "surrogateescape")) > MAX_FILENAME_BYTES:
        raise InputError(
            path,
            f"filename: the absolute path has "
            f"{len(absolute.encode('utf-8', 'surrogateescape'))} bytes, the "
            f"database holds at most {MAX_FILENAME_BYTES}",
        )
    if not path.exists():
        raise InputError(path, "no such file")
    # astropy reports damage as warnings printed to stderr: catch them so that the user sees
    # one error line, and refuse a truncated master rather than register it with a warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, memmap=False, lazy_load_hdus=False) as hdul:
                primary = hdul[0].header
                images = [
                    (i, hdu.header)
                    for i, hdu in enumerate(hdul)
                    if hdu.is_image and (hdu.header.get("NAXIS", 0) or 0) > 0
                ]
                if not images:
                    images = [(0, primary)]
                headers = [(i, [h] if i == 0 else [h, primary]) for i, h in images]
        except OSError as exc:
            raise FormatError(path, f"unreadable FITS file: {exc}{_why(caught)}") from None
        except Exception as exc:  # astropy raises assorted errors on damaged headers
            raise FormatError(
                path, f"unreadable FITS file: {type(exc).__name__}: {exc}{_why(caught)}"
            ) from None
    truncated = [w for w in caught if "truncated" in str(w.message).lower()]
    if truncated:
        raise FormatError(path, f"truncated FITS file: {one_line(truncated[0].message)}")
    treg = overrides.treg
    now = int(datetime.now(UTC).timestamp()) if now is None else now
    entries = []
    for index, hdrs in headers:
        source = str(path) if len(headers) == 1 else f"{path}[{index}]"
        entries.append(_entry(absolute, source, hdrs, overrides, treg, now))
    return entries


def _why(caught: list) -> str:
    """The first warning astropy gave while failing, as context for the error line."""
    return f" ({one_line(caught[0].message)})" if caught else ""


def _required(headers, key: str, override, source: str, option: str):
    if override is not None:
        return override
    value = _lookup(headers, key)
    if value is None:
        raise InputError(source, f"field {key}: missing from the header and no {option} given")
    return value


def _entry(absolute: str, source: str, headers: list, o: Overrides, treg, now: int) -> DetRegEntry:
    # the fields in the order their errors are reported
    type_name = _type_of(headers, o, source)
    ccd = _ccd_of(headers, o, source)
    filter_name, exptime = _class_of(headers, type_name, o, source)
    tstart, tstop = _validity(headers, o, source)
    sigma = _float(headers, "SIGMA", o.sigma, source)
    clipsigma = _float(headers, "CLIPSIG", o.clipsigma, source)
    return DetRegEntry(
        filename=absolute,
        type=type_name,
        ccd=ccd,
        tstart=tstart,
        tstop=tstop,
        treg=now if treg is None else parse_time(treg, source=source, field="--treg"),
        filter=filter_name,
        exptime=exptime,
        sigma=sigma,
        clipsigma=clipsigma,
        source=source,
    )


def _type_of(headers: list, o: Overrides, source: str) -> str:
    """The detrend type: --type, else IMAGETYP, else OBSTYPE."""
    if o.type is not None:
        type_name = detrend_type(o.type)
        if type_name is None:
            raise InputError(
                source,
                f"field type: unknown detrend type {o.type!r} "
                "(expected bias, dark, flat, fringe or mask)",
            )
        return type_name
    raw = _lookup(headers, "IMAGETYP")
    key = "IMAGETYP"
    if raw is None:
        raw, key = _lookup(headers, "OBSTYPE"), "OBSTYPE"
    if raw is None:
        raise InputError(
            source,
            "field IMAGETYP: missing from the header (no OBSTYPE either) and no --type given",
        )
    type_name = detrend_type(raw)
    if type_name is None:
        raise InputError(
            source,
            f"field {key}: unknown detrend type {raw!r} (expected "
            "bias/zero, dark, flat, fringe or mask; or give --type)",
        )
    return type_name


def _ccd_of(headers: list, o: Overrides, source: str) -> int:
    ccd_value = _required(headers, "CCDNUM", o.ccd, source, "--ccd")
    try:
        return int(ccd_value)
    except (TypeError, ValueError):
        raise InputError(
            source, f"field CCDNUM: expected an integer, found {ccd_value!r}"
        ) from None


def _class_of(
    headers: list, type_name: str, o: Overrides, source: str
) -> tuple[str | None, int | None]:
    """(filter name, exposure time): a flat or fringe needs its filter, a dark its exposure
    time; a bias or mask takes a filter only when one is asked for."""
    if type_name in ("flat", "fringe"):
        return str(_required(headers, "FILTER", o.filter, source, "--filter")).strip(), None
    if type_name in ("bias", "mask"):
        return o.filter, None
    value = _required(headers, "EXPTIME", o.exptime, source, "--exptime")
    try:
        return None, round(float(value))
    except (TypeError, ValueError):
        raise InputError(source, f"field EXPTIME: expected seconds, found {value!r}") from None


def _validity(headers: list, o: Overrides, source: str) -> tuple[int, int]:
    """(tstart, tstop) from TV_START/TV_STOP or the options; tstop must be later."""
    tstart = parse_time(
        _required(headers, "TV_START", o.tstart, source, "--tstart"),
        source=source,
        field="TV_START" if o.tstart is None else "--tstart",
    )
    tstop = parse_time(
        _required(headers, "TV_STOP", o.tstop, source, "--tstop"),
        source=source,
        field="TV_STOP" if o.tstop is None else "--tstop",
        allow_never=True,
    )
    if tstop <= tstart:
        raise InputError(
            source,
            f"field TV_STOP: validity ends ({tstop}) at or before it "
            f"starts ({tstart}); tstop must be later than tstart",
        )
    return tstart, tstop


def _float(headers, key: str, override, source: str) -> float:
    value = override if override is not None else _lookup(headers, key)
    if value is None:
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(source, f"field {key}: expected a number, found {value!r}") from None


__all__ = ["Overrides", "detrend_type", "entries_from_fits", "parse_time"]
