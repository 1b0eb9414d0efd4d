"""The one time parser and formatter of the detrend side.

Times are written by people (``--time``, ``--tstart``, ``TV_START`` cards) as ISO-8601 UTC
(``2019-04-02T05:13:00``, ``…Z``, a date alone, a UTC offset), as Unix seconds (``1554181980``,
``1554181980.5``) or, for the end of a validity, ``never``. Unix time has no leap second:
``23:59:60.x`` is the first second of the next day. Numbers are read exactly (as decimals), so
seconds are floored and microseconds rounded without binary rounding errors.

Pure standard library: ``detsearch`` imports it on its fast path.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from nightlake.detrends.detreg.record import OPEN_ENDED
from nightlake.detrends.detreg.record import iso as iso_utc

#: Spellings of an open-ended validity end (compared lower-case).
NEVER = ("never", "inf", "open", "none")

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_FITS_ISO = re.compile(r"(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?")
_LEAP = re.compile(r"^(.*[T ]23:59:)60(\.\d*)?(.*)$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_to_unix_us(text: str) -> int:
    """Unix µs of an ISO-8601 UTC calendar time without offset (FITS ``DATE-OBS`` form)."""
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1]
    match = _FITS_ISO.fullmatch(text)
    if not match:
        raise ValueError(f"not an ISO-8601 time: {text!r}")
    date, hh, mm, ss, frac = match.groups()
    hh, mm, ss = int(hh or 0), int(mm or 0), int(ss or 0)
    if hh > 23 or mm > 59 or ss > 60 or (ss == 60 and (hh, mm) != (23, 59)):
        raise ValueError(f"not an ISO-8601 time: {text!r}")
    base = datetime.fromisoformat(date).replace(tzinfo=UTC)
    seconds = int(base.timestamp()) + hh * 3600 + mm * 60 + ss
    micro = round(float(frac) * 1_000_000) if frac else 0
    return seconds * 1_000_000 + micro


def _offset_iso_to_unix_us(text: str) -> int:
    """Any other ISO-8601 form Python reads (a UTC offset, ``YYYYMMDD``…), leap second kept."""
    leap = 0
    match = _LEAP.match(text)
    if match:
        text = f"{match.group(1)}59{match.group(2) or ''}{match.group(3)}"
        leap = 1_000_000
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds + leap


def _exact(value: object) -> Decimal | None:
    """The number ``value`` is or spells, exactly; None when it is not a finite number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = Decimal(value)
        except (InvalidOperation, ValueError):
            return None
        return number if number.is_finite() else None
    text = str(value).strip()
    return Decimal(text) if _NUMBER.fullmatch(text) else None


def _message(value: object, allow_never: bool) -> str:
    never = " or 'never'" if allow_never else ""
    return (
        f"not a time: {value!r} (expected ISO-8601 UTC like 2019-04-02T05:13:00, "
        f"Unix seconds{never})"
    )


def parse_time_us(value: object, *, allow_never: bool = False) -> int:
    """``value`` (ISO-8601 UTC, Unix seconds, or ``never`` if allowed) as Unix microseconds.

    ``never`` gives :data:`OPEN_ENDED` (the all-bits tstop, not scaled). ValueError otherwise.
    """
    number = _exact(value)
    if number is not None:
        return int((number * 1_000_000).to_integral_value(ROUND_HALF_EVEN))
    if isinstance(value, (bool, int, float)):
        raise ValueError(_message(value, allow_never))
    text = str(value).strip()
    if allow_never and text.lower() in NEVER:
        return OPEN_ENDED
    try:
        return iso_to_unix_us(text)
    except ValueError:
        pass
    try:
        return _offset_iso_to_unix_us(text)
    except (ValueError, OverflowError):
        raise ValueError(_message(value, allow_never)) from None


def parse_time_s(value: object, *, allow_never: bool = False) -> int:
    """``value`` as whole Unix seconds (floored); ``never`` → :data:`OPEN_ENDED`."""
    number = _exact(value)
    if number is not None:
        return int(number.to_integral_value(rounding="ROUND_FLOOR"))
    micros = parse_time_us(value, allow_never=allow_never)
    return micros if micros == OPEN_ENDED and allow_never else micros // 1_000_000


def iso_utc_us(time_us: int) -> str:
    """Unix microseconds as ISO-8601 UTC; the fraction is shown only when there is one."""
    seconds, micro = divmod(int(time_us), 1_000_000)
    text = iso_utc(seconds)
    if micro and text.endswith("Z"):
        text = f"{text[:-1]}.{micro:06d}".rstrip("0") + "Z"
    return text
