"""The one time parser of the detrend side, against astropy and the parsers it replaces."""

from __future__ import annotations

import calendar
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nightlake.detrends.detreg.record import OPEN_ENDED
from nightlake.detrends.times import iso_utc, iso_utc_us, parse_time_s, parse_time_us

_moments = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1))
# before 1972 UTC ran on stretched ("rubber") seconds, and astropy's unix follows them: compared
# with astropy only from 1972 on, where a UTC day is 86400 SI seconds but for leap seconds
_modern = st.datetimes(min_value=datetime(1972, 1, 2), max_value=datetime(2200, 1, 1))


@settings(max_examples=60, deadline=None)
@given(_modern)
def test_iso_agrees_with_astropy(moment):
    from astropy.time import Time

    from nightlake.detrends.images import LEAP_SECOND_DAYS, UNIX_EPOCH_MJD

    # astropy's unix stretches a day that ends with a leap second; POSIX does not
    assume(
        (moment.date() - datetime(1970, 1, 1).date()).days + UNIX_EPOCH_MJD not in LEAP_SECOND_DAYS
    )
    text = moment.isoformat(timespec="microseconds")
    expected = round(Time(text, format="isot", scale="utc").unix * 1e6)
    assert abs(parse_time_us(text) - expected) <= 1  # astropy's unix is a float of seconds
    assert parse_time_us(text + "Z") == parse_time_us(text)


@settings(max_examples=100, deadline=None)
@given(_moments, st.integers(-14 * 60, 14 * 60))
def test_an_offset_is_converted_to_utc(moment, minutes):
    zone = moment.replace(tzinfo=UTC).astimezone(
        __import__("datetime").timezone(timedelta(minutes=minutes))
    )
    assert parse_time_us(zone.isoformat()) == parse_time_us(moment.isoformat())


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**40), st.integers(0, 999_999))
def test_unix_seconds_are_read_exactly(seconds, micro):
    text = f"{seconds}.{micro:06d}"
    assert parse_time_us(text) == seconds * 1_000_000 + micro
    assert parse_time_s(text) == seconds  # floored, as detregister always did
    assert parse_time_s(seconds) == seconds and parse_time_us(seconds) == seconds * 1_000_000


@settings(max_examples=100, deadline=None)
@given(_moments)
def test_seconds_agree_with_calendar_timegm(moment):
    # the old detregister parser: calendar.timegm of the (UTC) calendar time
    text = moment.isoformat(timespec="seconds")
    assert parse_time_s(text) == calendar.timegm(moment.timetuple())


def test_a_leap_second_is_the_first_second_of_the_next_day():
    assert parse_time_s("2016-12-31T23:59:60") == parse_time_s("2017-01-01T00:00:00")
    assert parse_time_us("2016-12-31T23:59:60.5") == parse_time_us("2017-01-01T00:00:00.5")
    assert parse_time_us("2016-12-31T23:59:60.5+00:00") == parse_time_us("2017-01-01T00:00:00.5")


def test_never_only_where_allowed():
    for spelling in ("never", "NEVER", " inf ", "open", "none"):
        assert parse_time_s(spelling, allow_never=True) == OPEN_ENDED
        with pytest.raises(ValueError, match="not a time"):
            parse_time_s(spelling)


@pytest.mark.parametrize(
    "bad", ["soon", "", "nan", "inf", "1e400x", "2019-13-01", "2019-04-02T24:00:00", True, math.nan]
)
def test_not_a_time(bad):
    with pytest.raises(ValueError, match="not a time"):
        parse_time_us(bad)


def test_round_trip_through_the_formatter():
    assert iso_utc(OPEN_ENDED) == "never"
    assert iso_utc(0) == "1970-01-01T00:00:00Z"
    assert iso_utc_us(1_500_000) == "1970-01-01T00:00:01.5Z"
    assert parse_time_us(iso_utc_us(1_554_181_980_250_000)) == 1_554_181_980_250_000
