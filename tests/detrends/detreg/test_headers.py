"""Master-image FITS headers -> DetReg entries; times; type spellings."""

from __future__ import annotations

import pytest

from nightlake.detrends.detreg import OPEN_ENDED
from nightlake.detrends.detreg.headers import Overrides, detrend_type, entries_from_fits, parse_time
from nightlake.errors import FormatError, InputError


@pytest.mark.parametrize(
    "spelling,expected",
    [
        ("bias", "bias"),
        ("BIAS", "bias"),
        ("zero", "bias"),
        ("Zero", "bias"),
        ("master bias", "bias"),
        ("dark", "dark"),
        ("DARK", "dark"),
        ("dome flat", "flat"),
        ("DOMEFLAT", "flat"),
        ("sky_flat", "flat"),
        ("Twilight Flat", "flat"),
        ("flat", "flat"),
        ("fringe", "fringe"),
        ("Fringe", "fringe"),
        ("mask", "mask"),
        ("BPM", "mask"),
        ("bad pixel mask", "mask"),
        ("3", "flat"),
        ("object", None),
        ("", None),
        ("sky", None),
    ],
)
def test_type_spellings(spelling, expected):
    assert detrend_type(spelling) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2014-09-01T00:00:00",
        "2014-09-01 12:34:56",
        "2000-01-01T00:00:00",
        "1970-01-01T00:00:00",
        "2016-12-30T23:59:59",
        "2017-01-01T00:00:00",
        "2038-01-19T03:14:08",
        "2014-09-01",
        "2014-09-01T00:00:00.999",
        "2100-02-28T23:00:00",
    ],
)
@pytest.mark.filterwarnings("ignore:ERFA function")
def test_iso_times_agree_with_astropy(text):
    from astropy.time import Time
    from astropy.utils import iers

    iers.conf.auto_download = False
    expected = int(
        Time(text.replace(" ", "T") if "T" not in text and " " in text else text, scale="utc").unix
        // 1
    )
    assert parse_time(text, source="x", field="TV_START") == expected


def test_time_forms():
    assert parse_time(1400000000, source="x", field="f") == 1400000000
    assert parse_time(1400000000.9, source="x", field="f") == 1400000000
    assert parse_time("1400000000", source="x", field="f") == 1400000000
    assert parse_time("1.4e9", source="x", field="f") == 1400000000
    assert parse_time("2014-09-01T02:00:00+02:00", source="x", field="f") == 1409529600
    assert parse_time("2014-09-01T00:00:00Z", source="x", field="f") == 1409529600
    assert parse_time("never", source="x", field="f", allow_never=True) == OPEN_ENDED
    # On the day of a leap second astropy's Time.unix spreads the extra second over the day;
    # POSIX time (what C's time() and our files hold) is days * 86400 + seconds of the day:
    assert parse_time("2016-12-31T23:59:59", source="x", field="f") == 17166 * 86400 + 86399
    # a leap second maps onto the next second (Unix time has no leap seconds)
    assert parse_time("2016-12-31T23:59:60", source="x", field="f") == 1483228800
    with pytest.raises(InputError, match="x: field TV_STOP: expected ISO-8601"):
        parse_time("never", source="x", field="TV_STOP")
    with pytest.raises(InputError, match="outside"):
        parse_time(-5, source="x", field="f")
    with pytest.raises(InputError, match="expected ISO-8601"):
        parse_time("yesterday", source="x", field="f")


def test_flat_header_fields(master):
    path = master()
    [e] = entries_from_fits(path, now=1234)
    assert (e.type, e.filter, e.ccd, e.exptime) == ("flat", "VR DECam c0007 6300.0 2600.0", 5, None)
    assert (e.tstart, e.tstop, e.treg) == (1409529600, 1412121600, 1234)
    assert (e.sigma, e.clipsigma) == (1.5, 1.25)
    assert e.filename == str(path.absolute())


def test_dark_uses_exptime_and_bias_any_filter(master):
    [dark] = entries_from_fits(master("d.fits", IMAGETYP="DARK", EXPTIME=299.6), now=0)
    assert (dark.type, dark.exptime, dark.filter) == ("dark", 300, None)
    [bias] = entries_from_fits(master("b.fits", IMAGETYP="zero", drop=("SIGMA", "CLIPSIG")), now=0)
    assert (bias.type, bias.filter) == ("bias", None)
    assert bias.sigma != bias.sigma  # NaN when SIGMA is absent


def test_obstype_when_imagetyp_absent(master):
    [e] = entries_from_fits(master(drop=("IMAGETYP",), OBSTYPE="Fringe"), now=0)
    assert e.type == "fringe"


def test_overrides_win(master):
    path = master()
    o = Overrides(
        type="dark",
        exptime=30,
        ccd=9,
        tstart="1000",
        tstop="never",
        sigma=4.0,
        clipsigma=5.0,
        treg="2000",
    )
    [e] = entries_from_fits(path, o)
    assert (e.type, e.exptime, e.ccd, e.tstart, e.tstop, e.treg, e.sigma, e.clipsigma) == (
        "dark",
        30,
        9,
        1000,
        OPEN_ENDED,
        2000,
        4.0,
        5.0,
    )


def test_mef_gives_one_entry_per_image_extension(master):
    path = master("mef.fits", drop=("CCDNUM",), extensions=[{"CCDNUM": n} for n in (1, 7, 62)])
    entries = entries_from_fits(path, now=0)
    assert [e.ccd for e in entries] == [1, 7, 62]
    assert {e.filename for e in entries} == {str(path.absolute())}
    assert {e.filter for e in entries} == {"VR DECam c0007 6300.0 2600.0"}


def test_mef_extension_keywords_override_primary(master):
    path = master(
        "mef.fits", extensions=[{"CCDNUM": 3, "TV_STOP": "2015-01-01T00:00:00"}, {"CCDNUM": 4}]
    )
    a, b = entries_from_fits(path, now=0)
    assert (a.ccd, a.tstop) == (3, 1420070400)
    assert (b.ccd, b.tstop) == (4, 1412121600)


@pytest.mark.parametrize(
    "drop,cards,field",
    [
        (("IMAGETYP",), {}, "IMAGETYP"),
        (("FILTER",), {}, "FILTER"),
        (("CCDNUM",), {}, "CCDNUM"),
        (("TV_START",), {}, "TV_START"),
        (("TV_STOP",), {}, "TV_STOP"),
        ((), {"IMAGETYP": "dark"}, "EXPTIME"),
    ],
)
def test_missing_keyword_names_file_and_field(master, drop, cards, field):
    path = master(drop=drop, **cards)
    with pytest.raises(InputError, match=f"^{path}: field {field}: missing from the header"):
        entries_from_fits(path, now=0)


def test_mef_missing_keyword_names_the_extension(master):
    path = master("mef.fits", drop=("CCDNUM",), extensions=[{"CCDNUM": 1}, {}])
    with pytest.raises(InputError, match=r"mef.fits\[2\]: field CCDNUM: missing"):
        entries_from_fits(path, now=0)


def test_refusals(master, tmp_path):
    with pytest.raises(InputError, match="field TV_STOP: validity ends .* at or before"):
        entries_from_fits(master(TV_STOP="2014-09-01T00:00:00"), now=0)
    with pytest.raises(InputError, match="field IMAGETYP: unknown detrend type 'object'"):
        entries_from_fits(master("o.fits", IMAGETYP="object"), now=0)
    with pytest.raises(InputError, match="field type: unknown detrend type 'sky'"):
        entries_from_fits(master("s.fits"), Overrides(type="sky"), now=0)
    deep = tmp_path / ("d" * 200) / ("e" * 60)
    deep.mkdir(parents=True)
    long_name = deep / "flat.fits"
    with pytest.raises(InputError, match="filename: the absolute path has .* at most 253"):
        entries_from_fits(long_name, now=0)


def test_unreadable_fits(tmp_path):
    path = tmp_path / "broken.fits"
    path.write_bytes(b"this is not FITS at all" * 200)
    with pytest.raises(FormatError, match=f"^{path}: unreadable FITS file"):
        entries_from_fits(path, now=0)
    missing = tmp_path / "missing.fits"
    with pytest.raises(InputError, match="no such file"):
        entries_from_fits(missing, now=0)
