"""MJD (TAI or UTC) → UTC ``timestamp[us]`` with ERFA alone, the same values as astropy.

``convert`` derives ``obs_time`` from ``mjd``; importing ``astropy.time`` for it would be
most of the time of a one-night convert (bench/RESULTS.md, goal 4). astropy does the
arithmetic in ERFA (pyerfa, which it depends on): two-part Julian dates split exactly
(``day_frac``), ``erfa.taiutc`` for the leap seconds, ``erfa.d2dtf`` for calendar fields
rounded to the microsecond. This module repeats those steps in the same order, so the
results are equal to the microsecond (tests/ingest/test_taitime.py holds them equal across
leap seconds); a time inside a leap second (23:59:60.x) lands on 00:00:00.x of the next
day, as on a POSIX clock.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

MJD_ZERO = 2400000.5  # JD of MJD 0 (ERFA's DJM0)
SCALES = ("tai", "utc")


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a + b`` as a float64 and its exact rounding error (Shewchuk)."""
    x = a + b
    eb = x - a
    ea = x - eb
    eb = b - eb
    ea = a - ea
    return x, ea + eb


def _day_frac(val1: np.ndarray, val2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``val1 + val2`` as whole days and a fraction in [-0.5, 0.5], as astropy splits them
    (a different split moves d2dtf's rounding to the microsecond, so it must be this one)."""
    sum12, err12 = _two_sum(val1, val2)
    day = np.round(sum12)
    frac, check = _two_sum(sum12 - day, err12)
    excess = np.where(frac * np.sign(check) != 0.5, np.round(frac), np.round(frac + 2 * check))
    day += excess
    frac = sum12 - day
    frac += err12
    return day, frac


def mjd_to_utc_datetime64(mjd: np.ndarray, scale: str) -> np.ndarray:
    """MJD values in ``scale`` (``tai`` or ``utc``) → ``datetime64[us]`` in UTC (finite input)."""
    import erfa

    if scale not in SCALES:
        raise ValueError(f"time scale must be one of {', '.join(SCALES)}, not {scale!r}")
    mjd = np.atleast_1d(np.asarray(mjd, dtype="float64"))
    jd1, jd2 = _day_frac(mjd, np.zeros_like(mjd))
    jd1, jd2 = _day_frac(jd1 + MJD_ZERO, jd2)
    with warnings.catch_warnings():
        # "dubious year": outside the leap-second table; astropy computes the same values
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        if scale == "tai":
            jd1, jd2 = _day_frac(*erfa.taiutc(jd1, jd2))
        return utc_jd_to_datetime64(jd1, jd2)


def utc_jd_to_datetime64(jd1: np.ndarray, jd2: np.ndarray) -> np.ndarray:
    """A UTC two-part JD as ``datetime64[us]``: ERFA's calendar fields, rounded to the
    microsecond as astropy's ``isot`` is; a leap second (23:59:60.x) lands on 00:00:00.x of
    the next day, as on a POSIX clock."""
    import erfa

    year, month, day, hmsf = erfa.d2dtf("UTC", 6, jd1, jd2)
    months = (year.astype("int64") - 1970) * 12 + (month.astype("int64") - 1)
    days = months.astype("datetime64[M]").astype("datetime64[D]") + (day.astype("int64") - 1)
    micro = (
        hmsf["h"].astype("int64") * 3600
        + hmsf["m"].astype("int64") * 60
        + hmsf["s"].astype("int64")
    ) * 1_000_000 + hmsf["f"].astype("int64")
    return np.atleast_1d(days.astype("datetime64[us]") + micro.astype("timedelta64[us]"))


def datetime64_to_utc_jd(stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``datetime64`` in UTC (a POSIX clock) → a UTC two-part JD: the inverse of
    :func:`utc_jd_to_datetime64`, ERFA's ``dtf2d`` on the calendar fields as astropy parses
    a ``datetime64`` (there in Python, value by value)."""
    import erfa

    stamps = np.atleast_1d(np.asarray(stamps, dtype="datetime64[us]"))
    days = stamps.astype("datetime64[D]")
    months = days.astype("datetime64[M]")
    micro = (stamps - days).astype("int64")
    year = months.astype("int64") // 12 + 1970
    month = months.astype("int64") % 12 + 1
    day = (days - months.astype("datetime64[D]")).astype("int64") + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", erfa.ErfaWarning)  # "dubious year", as above
        jd1, jd2 = erfa.dtf2d(
            "UTC",
            year,
            month,
            day,
            micro // 3_600_000_000,
            micro // 60_000_000 % 60,
            (micro % 60_000_000) / 1e6,
        )
    return _day_frac(jd1, jd2)


def mjd_to_timestamp(mjd: pa.ChunkedArray | pa.Array, scale: str) -> pa.Array:
    """MJD in ``scale`` (tai or utc) → ``timestamp[us]`` in UTC; null where ``mjd`` is null
    or not finite."""
    import pyarrow as pa

    if isinstance(mjd, pa.ChunkedArray):
        mjd = mjd.combine_chunks()
    values = mjd.to_numpy(zero_copy_only=False).astype("float64")
    bad = ~np.isfinite(values)
    # each distinct value once: a visit's CCDs share its mjd (62 rows of DECam to one value)
    distinct, each = np.unique(np.where(bad, 51544.0, values), return_inverse=True)
    stamps = mjd_to_utc_datetime64(distinct, scale)[each.reshape(-1)]
    mask = bad | mjd.is_null().to_numpy(zero_copy_only=False)
    return pa.array(stamps, pa.timestamp("us"), mask=mask if mask.any() else None)


__all__ = [
    "SCALES",
    "datetime64_to_utc_jd",
    "mjd_to_timestamp",
    "mjd_to_utc_datetime64",
    "utc_jd_to_datetime64",
]
