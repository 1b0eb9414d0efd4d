"""Reading science-image headers: CCD/filter/exptime, and the image time checked against astropy."""

from __future__ import annotations

from datetime import UTC

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time
from astropy.utils import iers
from hypothesis import given, settings
from hypothesis import strategies as st

from nightlake.detrends.images import image_time_us, mjd_to_unix_us, read_header, read_image
from nightlake.errors import FormatError, InputError

iers.conf.auto_download = False
pytestmark = pytest.mark.filterwarnings("ignore::erfa.ErfaWarning")  # far-future dates
VR = "VR DECam c0007 6300.0 2600.0"


def astropy_unix_us(value, fmt, scale):
    """POSIX µs of astropy's UTC calendar time for the value (independent of nightlake)."""
    from datetime import datetime

    t = Time(value, format=fmt, scale=scale).utc
    t.precision = 6
    text = t.isot
    leap = text[17:19] == "60"
    if leap:
        text = text[:17] + "59" + text[19:]
    moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return round(moment.timestamp() * 1e6) + (1_000_000 if leap else 0)


def write_fits(path, header=None, extensions=(), data=True):
    primary = fits.PrimaryHDU(np.zeros((2, 2), dtype=np.int16) if data else None)
    for key, value in (header or {}).items():
        primary.header[key] = value
    hdus = [primary]
    for ext in extensions:
        hdu = fits.ImageHDU(np.zeros((3, 2), dtype=np.float32))
        for key, value in ext.items():
            hdu.header[key] = value
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(path)
    return path


def test_fields_of_a_single_ccd_image(tmp_path):
    path = write_fits(
        tmp_path / "a.fits",
        {"CCDNUM": 5, "FILTER": VR, "EXPTIME": 120.5, "MJD-OBS": 58575.2173611111},
    )
    image = read_image(path)
    assert (image.ccd, image.filter, image.band, image.exptime) == (5, VR, "VR", 120.5)
    assert image.name == str(path)
    assert abs(image.time_us - astropy_unix_us(58575.2173611111, "mjd", "utc")) <= 1


def test_strings_with_quotes_and_comments(tmp_path):
    path = write_fits(
        tmp_path / "q.fits",
        {"FILTER": ("it's / odd", "a comment"), "CCDNUM": 1, "DATE-OBS": "2019-04-02T05:13:00"},
    )
    assert read_header(path)["FILTER"] == "it's / odd"


def test_mef_picks_the_extension_of_the_ccd(tmp_path):
    path = write_fits(
        tmp_path / "m.fits",
        {"FILTER": VR, "EXPTIME": 60.0, "DATE-OBS": "2019-04-02T05:13:00.5"},
        extensions=[
            {"CCDNUM": 1, "EXTNAME": "S29"},
            {"CCDNUM": 7, "EXTNAME": "N1", "EXPTIME": 61.0},
        ],
        data=False,
    )
    image = read_image(path, ccd=7, layout="mef")
    assert (image.ccd, image.exptime, image.filter) == (7, 61.0, VR)
    assert image.time_us == 1554181980_500000
    with pytest.raises(FormatError, match=r"m\.fits: no extension for ccd 3"):
        read_image(path, ccd=3, layout="mef")


def test_extname_number_when_there_is_no_ccdnum(tmp_path):
    path = write_fits(
        tmp_path / "e.fits",
        {"FILTER": "r", "DATE-OBS": "2019-04-02T05:13:00"},
        extensions=[{"EXTNAME": "ccd00"}, {"EXTNAME": "ccd01"}],
        data=False,
    )
    assert read_image(path, ccd=0, layout="mef").ccd == 0


def test_split_reads_the_first_extension_of_a_dataless_primary(tmp_path):
    path = write_fits(
        tmp_path / "s.fits",
        {"FILTER": "g", "DATE-OBS": "2019-04-02"},
        extensions=[{"CCDNUM": 12, "TIME-OBS": "05:13:00"}],
        data=False,
    )
    image = read_image(path, layout="split")
    assert image.ccd == 12
    assert image.time_us == 1554181980_000000


@pytest.mark.parametrize("scale", ["TAI", "TT", "TDB", "UTC"])
def test_mjd_in_other_time_scales_agrees_with_astropy(tmp_path, scale):
    header = {"MJD-OBS": 58575.2173611111, "TIMESYS": scale}
    got = image_time_us(header, "x.fits")
    assert abs(got - astropy_unix_us(58575.2173611111, "mjd", scale.lower())) <= 1


def test_tai_differs_from_utc_by_the_leap_seconds():
    utc = image_time_us({"DATE-OBS": "2019-04-02T05:13:00"}, "x")
    tai = image_time_us({"DATE-OBS": "2019-04-02T05:13:00", "TIMESYS": "TAI"}, "x")
    assert utc - tai == 37_000_000  # TAI-UTC = 37 s since 2017


def test_a_leap_second_counts_as_the_next_days_first_second():
    assert image_time_us({"DATE-OBS": "2016-12-31T23:59:60.5"}, "x") == 1483228800_500000
    # MJD(UTC) on a leap-second day: the fraction counts 86401 s, as in astropy/ERFA
    mjd = Time("2016-12-31T23:59:60.5", scale="utc").mjd
    assert abs(image_time_us({"MJD-OBS": mjd}, "x") - 1483228800_500000) <= 2
    assert abs(image_time_us({"MJD-OBS": mjd}, "x") - astropy_unix_us(mjd, "mjd", "utc")) <= 2


def test_leap_second_days_match_astropys_table():
    from nightlake.detrends.images import LEAP_SECOND_DAYS

    table = iers.LeapSeconds.auto_open()
    days = {
        int(Time(f"{y}-{m:02d}-01", scale="tai").mjd) - 1
        for y, m in zip(table["year"], table["month"])
        if y >= 1972 and (y, m) != (1972, 1)
    }
    assert days == set(LEAP_SECOND_DAYS)


@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from(
        sorted(__import__("nightlake.detrends.images", fromlist=["x"]).LEAP_SECOND_DAYS)
    ),
    st.floats(min_value=0.0, max_value=0.99999),
)
def test_mjd_on_leap_second_days_equals_astropy(day, fraction):
    mjd = day + fraction
    assert abs(mjd_to_unix_us(mjd) - astropy_unix_us(mjd, "mjd", "utc")) <= 2


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=40587.0, max_value=70000.0, allow_nan=False))
def test_utc_mjd_arithmetic_equals_astropy(mjd):
    assert abs(mjd_to_unix_us(mjd) - astropy_unix_us(mjd, "mjd", "utc")) <= 2


@settings(max_examples=60, deadline=None)
@given(
    st.datetimes(
        min_value=__import__("datetime").datetime(1990, 1, 1),
        max_value=__import__("datetime").datetime(2060, 1, 1),
    )
)
def test_utc_date_obs_equals_astropy(moment):
    text = moment.isoformat(timespec="microseconds")
    assert image_time_us({"DATE-OBS": text}, "x") == astropy_unix_us(text, "isot", "utc")


@pytest.mark.parametrize(
    "header, cause",
    [
        ({}, "no image time in the header"),
        ({"DATE-OBS": "yesterday"}, "DATE-OBS 'yesterday' is not an ISO-8601 time"),
        ({"DATE-OBS": "2019-04-02T05:13:00", "TIMESYS": "MARS"}, "TIMESYS 'MARS'"),
    ],
)
def test_bad_times_name_the_file_and_the_cause(header, cause):
    with pytest.raises(FormatError, match=r"^img\.fits: .*" + cause.replace("(", r"\(")):
        image_time_us(header, "img.fits")


def test_not_fits_and_missing_files(tmp_path):
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"hello" * 1000)
    with pytest.raises(FormatError, match="bad.fits: not a FITS file"):
        read_header(bad)
    with pytest.raises(InputError, match="nope.fits: No such file"):
        read_header(tmp_path / "nope.fits")
    cut = tmp_path / "cut.fits"
    cut.write_bytes((tmp_path / "bad.fits").read_bytes() * 0 + b"SIMPLE  =" + b" " * 100)
    with pytest.raises(FormatError, match="cut.fits: truncated FITS header"):
        read_header(cut)
