"""nightlake.taitime (ERFA alone) gives the obs_time astropy gives, to the microsecond."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import erfa
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nightlake.ingest.ecsv import utc_datetime64
from nightlake.ingest.taitime import mjd_to_timestamp, mjd_to_utc_datetime64

MJD_1970 = 40587


def astropy_mjd_to_timestamp(mjd: pa.Array | pa.ChunkedArray, scale: str) -> pa.Array:
    """The reference: astropy's Time (leap seconds from its installed tables, no network)."""
    from astropy.time import Time
    from astropy.utils import iers

    iers.conf.auto_download = False
    if isinstance(mjd, pa.ChunkedArray):
        mjd = mjd.combine_chunks()
    values = mjd.to_numpy(zero_copy_only=False).astype("float64")
    bad = ~np.isfinite(values)
    stamps = utc_datetime64(Time(np.where(bad, 51544.0, values), format="mjd", scale=scale))
    mask = bad | mjd.is_null().to_numpy(zero_copy_only=False)
    return pa.array(stamps, pa.timestamp("us"), mask=mask if mask.any() else None)


# astropy (the reference) warns of "dubious year" beyond the leap-second table; so may we
pytestmark = pytest.mark.filterwarnings("ignore::erfa.ErfaWarning")


def _leap_days() -> list[int]:
    """MJD (UTC) of each day that starts right after a leap second, from ERFA's own table."""
    table = erfa.leap_seconds.get()
    days = [
        (dt.date(int(y), int(m), 1) - dt.date(1970, 1, 1)).days + MJD_1970
        for y, m in zip(table["year"], table["month"])
        if int(y) >= 1972
    ]
    return days[1:]  # 1972-01-01 is where the integral-second table begins, not a leap


LEAP_DAYS = _leap_days()
SECOND = 1 / 86400

# around each leap second: up to two minutes either side (TAI is 10-37 s ahead of UTC), with
# every sub-second fraction; and anywhere from 1962 (ERFA's "rubber second" era) to 2060
near_leap = st.builds(
    lambda day, s: day + s * SECOND,
    st.sampled_from(LEAP_DAYS),
    st.floats(-120.0, 120.0, allow_nan=False),
)
anywhere = st.floats(37665.0, 62502.0, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(
    # some values again, anywhere in the list: a visit's CCDs share one mjd
    values=st.lists(st.one_of(near_leap, anywhere), min_size=1, max_size=40).flatmap(
        lambda v: st.permutations(v + v[: len(v) // 2])
    ),
    scale=st.sampled_from(["tai", "utc"]),
)
def test_same_as_astropy(values, scale):
    mjd = pa.array(values, pa.float64())
    assert mjd_to_timestamp(mjd, scale).equals(astropy_mjd_to_timestamp(mjd, scale))


@pytest.mark.parametrize("scale", ["tai", "utc"])
def test_every_leap_second_edge(scale):
    """The instants just before, in and after each leap second (both scales, every leap)."""
    offsets = np.array([-1.5, -1.0, -0.5, -1e-6, 0.0, 1e-6, 0.5, 1.0, 36.5, 37.0, 37.5])
    mjd = pa.array(
        (np.array(LEAP_DAYS, dtype="float64")[:, None] + offsets[None, :] * SECOND).ravel()
    )
    assert mjd_to_timestamp(mjd, scale).equals(astropy_mjd_to_timestamp(mjd, scale))


def test_leap_second_lands_on_next_midnight():
    """2016-12-31T23:59:60.5 UTC is 2017-01-01T00:00:36.5 TAI; POSIX has no :60."""
    tai = 57754 + 36.5 * SECOND
    assert mjd_to_utc_datetime64(np.array([tai]), "tai")[0] == np.datetime64(
        "2017-01-01T00:00:00.500000"
    )


def test_null_nan_and_infinite_are_null():
    mjd = pa.chunked_array([[58000.5, None], [float("nan"), float("inf"), -float("inf")]])
    out = mjd_to_timestamp(mjd, "tai")
    assert out.null_count == 4
    assert out.equals(astropy_mjd_to_timestamp(mjd, "tai"))


def test_unknown_scale_is_refused():
    with pytest.raises(ValueError, match="tai, utc"):
        mjd_to_utc_datetime64(np.array([58000.0]), "tt")


def test_astropy_is_not_imported():
    code = (
        "import sys, pyarrow as pa; from nightlake.ingest.taitime import mjd_to_timestamp; "
        "mjd_to_timestamp(pa.array([58000.25]), 'tai'); "
        "sys.exit('astropy imported' if any(m.split('.')[0] == 'astropy' "
        "for m in sys.modules) else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.one_of(
            # 1900 … 2100, and the microseconds around the leap seconds of 2016 and 1972
            st.integers(-2_208_988_800_000_000, 4_102_444_800_000_000),
            st.integers(1_483_228_799_000_000, 1_483_228_801_000_000),
            st.integers(78_796_799_000_000, 78_796_801_000_000),
        ),
        min_size=1,
        max_size=50,
    )
)
def test_datetime64_to_utc_jd_is_astropys_parse(micros):
    """The inverse of utc_jd_to_datetime64 gives the two-part JD astropy parses a
    ``datetime64`` into, bit for bit, and the microsecond back."""
    import warnings

    from astropy.time import Time

    from nightlake.ingest.taitime import datetime64_to_utc_jd, utc_jd_to_datetime64

    stamps = np.array(micros, dtype="datetime64[us]")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", erfa.ErfaWarning)  # "dubious year" before 1960
        reference = Time(stamps, format="datetime64", scale="utc")
        jd1, jd2 = datetime64_to_utc_jd(stamps)
        back = utc_jd_to_datetime64(jd1, jd2)
    assert np.array_equal(jd1, reference.jd1) and np.array_equal(jd2, reference.jd2)
    assert np.array_equal(back, stamps)
