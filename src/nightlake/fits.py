"""FITS headers: the one reader of 2880-byte blocks of 80-character cards.

Both science images (``detrends.images``) and DetReg files (``detrends.detreg.format``) are
read through it. It reads what astropy.io.fits reads from the same bytes (tests/test_fits.py
holds the two equal) without importing astropy or numpy, so that ``detsearch`` starts fast:

- the first of duplicate keywords wins;
- CONTINUE cards extend the string of the card before them (a trailing ``&`` on each piece
  marks the continuation and is dropped);
- ``HIERARCH`` cards carry long keywords, stored without the ``HIERARCH``;
- COMMENT, HISTORY, blank and other cards without a ``= `` value indicator are skipped;
- a value is parsed when it is asked for, and one that is not a FITS value raises then,
  naming the file and the card: an odd card nobody needs does not make a file unreadable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO

from nightlake.errors import FormatError

BLOCK = 2880
CARD = 80
#: Keywords whose cards carry text, never a value, even when column 9 holds '='.
COMMENTARY = frozenset(("", "COMMENT", "HISTORY"))

_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[EeDd][+-]?\d+)?"
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(_NUMBER)
_COMPLEX = re.compile(rf"\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)")


class Cards(Mapping[str, object]):
    """A header's valued cards by keyword: str, bool, int, float, complex or None (no value).

    Values are parsed on access; a value that is not a FITS value raises
    :class:`~nightlake.errors.FormatError` naming the file and the card.
    """

    def __init__(self, path: str, fields: dict[str, list[str]]) -> None:
        self.path = path
        self._fields = fields  # keyword -> value field of its card, then of its CONTINUE cards
        self._values: dict[str, object] = {}

    def __getitem__(self, key: str) -> object:
        try:
            return self._values[key]
        except KeyError:
            pass
        try:
            value = _parse(self._fields[key])
        except ValueError as exc:
            raise FormatError(self.path, f"header card {key}: {exc}") from None
        self._values[key] = value
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __or__(self, other: Cards) -> Cards:
        """These cards overlaid with ``other``'s (an extension header over its primary)."""
        return Cards(other.path, {**self._fields, **other._fields})

    def __repr__(self) -> str:
        return f"Cards({self.path!r}, {list(self._fields)})"


@dataclass(frozen=True)
class Header:
    """One HDU's header: its cards and its length in bytes (whole blocks up to END)."""

    cards: Cards
    length: int


def primary_header(data, path: str | os.PathLike[str]) -> Header:
    """The primary header at the start of ``data`` (bytes-like, e.g. a whole file read)."""
    position = 0

    def read(size: int) -> bytes:
        nonlocal position
        chunk = bytes(data[position : position + size])
        position += len(chunk)
        return chunk

    return _read_header(read, str(path), primary=True)  # type: ignore[return-value]


def headers(handle: IO[bytes], path: str | os.PathLike[str]) -> Iterator[Header]:
    """Each HDU's header in a FITS file open for binary reading, skipping the data."""
    path = str(path)
    header = _read_header(handle.read, path, primary=True)
    while header is not None:
        yield header
        size = data_size(header.cards)
        if size:
            handle.seek(size + (-size % BLOCK), os.SEEK_CUR)
        header = _read_header(handle.read, path, primary=False)


def data_size(cards: Mapping[str, object]) -> int:
    """Bytes of the data that follow a header (before padding to a whole block)."""
    naxis = cards.get("NAXIS") or 0
    if not isinstance(naxis, int) or naxis <= 0:
        return 0
    count = 1
    for axis in range(1, naxis + 1):
        count *= _integer(cards, f"NAXIS{axis}", 0)
    bitpix = abs(_integer(cards, "BITPIX", 8))
    return bitpix // 8 * _integer(cards, "GCOUNT", 1) * (_integer(cards, "PCOUNT", 0) + count)


def _integer(cards: Mapping[str, object], key: str, default: int) -> int:
    return int(cards.get(key) or default)  # type: ignore[call-overload]


def _read_header(read: Callable[[int], bytes], path: str, *, primary: bool) -> Header | None:
    """The next header from ``read``; None at the end of the file before an extension."""
    fields: dict[str, list[str]] = {}
    state = _Scan(fields)
    length = 0
    while True:
        block = read(BLOCK)
        if not block:
            if length == 0 and not primary:
                return None
            if length == 0:
                raise FormatError(path, "not a FITS file: it is empty")
            raise FormatError(path, "truncated FITS header (no END card before the file ends)")
        if length == 0 and primary and not block.startswith(b"SIMPLE  ="):
            raise FormatError(path, "not a FITS file: it does not start with a SIMPLE card")
        length += BLOCK
        text = block.decode("ascii", "replace").replace("\ufffd", "?")  # as astropy does
        for start in range(0, len(text) - CARD + 1, CARD):
            if state.add(text[start : start + CARD]):
                return Header(Cards(path, fields), length)
        if len(block) < BLOCK:
            raise FormatError(path, "truncated FITS header (no END card before the file ends)")


class _Scan:
    """Sorts cards into ``fields``: keyword -> value field(s), the first card of a keyword
    winning, CONTINUE cards joining the field list of the card just before them."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self.fields = fields
        self.last: list[str] | None = None  # the field list a CONTINUE card would extend

    def add(self, card: str) -> bool:
        """Take one card; True at END."""
        key = card[:8].rstrip().upper()
        if key == "CONTINUE":
            if self.last is not None:
                self.last.append(card[8:])
            return False
        self.last = None
        if key == "END":
            return True
        if key == "HIERARCH":
            key, equals, field = card[8:].partition("=")
            key = key.strip()
            if not equals or not key:
                return False
        elif card[8:10] == "= " and key not in COMMENTARY:
            field = card[10:]
        else:
            return False
        self.last = [field]
        self.fields.setdefault(key, self.last)
        return False


def _parse(fields: list[str]) -> object:
    """The value of a card's value field, joined with its CONTINUE cards' strings."""
    if len(fields) == 1:
        return _value(fields[0])
    pieces = []
    for field in fields:
        piece = _value(field)
        if not isinstance(piece, str):
            raise ValueError(f"a CONTINUE card follows a value that is not a string ({field!r})")
        pieces.append(piece[:-1] if piece.endswith("&") else piece)
    return "".join(pieces).rstrip()  # trailing blanks of the whole string do not count


def _value(field: str) -> object:
    """One value field (after ``= ``, comment included): str, bool, int, float, complex, None."""
    text = field.strip()
    if text.startswith("'"):
        return _string(text)
    token = text.split("/", 1)[0].strip()
    if token == "":
        return None
    if token in ("T", "F"):
        return token == "T"
    if _INT.fullmatch(token):
        return int(token)
    if _FLOAT.fullmatch(token):
        return _float(token)
    if match := _COMPLEX.fullmatch(token):
        return complex(_float(match.group(1)), _float(match.group(2)))
    raise ValueError(f"{token!r} is not a FITS value (string, logical, number)")


def _string(text: str) -> str:
    """A quoted string (``''`` is a quote), trailing blanks dropped; a comment may follow."""
    out, i = [], 1
    while True:
        end = text.find("'", i)
        if end < 0:
            raise ValueError(f"unterminated string {text!r}")
        out.append(text[i:end])
        if text[end + 1 : end + 2] != "'":
            break
        out.append("'")
        i = end + 2
    rest = text[end + 1 :].lstrip()
    if rest and not rest.startswith("/"):
        raise ValueError(f"text after the closing quote of {text!r}")
    return "".join(out).rstrip()


def _float(token: str) -> float:
    return float(token.replace("D", "E").replace("d", "e"))


__all__ = ["BLOCK", "CARD", "Cards", "Header", "data_size", "headers", "primary_header"]
