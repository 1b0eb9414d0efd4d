"""The FITS header card reader, held equal to astropy.io.fits reading the same bytes."""

from __future__ import annotations

import gzip
import re
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.io.fits.verify import VerifyError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nightlake.errors import FormatError
from nightlake.fits import BLOCK, CARD, headers, primary_header

# -- card images written by hand (free and fixed format), never by the reader under test ------

KEYS = st.sampled_from(["A", "B", "FILTER", "MJD-OBS", "DATE_OBS", "NAXIS9", "X1234567"])
# astropy ends a string at a quote followed by '/' (astropy issue 18831): a quote then a slash
# inside a string is left to test_quotes_where_astropy_misreads_the_string
TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30).filter(
    lambda text: not re.search("' */", text)
)
# and may read past the closing quote into a comment that holds one
NOTES = TEXT.filter(lambda text: "'" not in text)
COMMENTS = st.one_of(st.just(""), NOTES.map(lambda text: f" / {text}"))


def quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


VALUES = st.one_of(
    st.booleans().map(lambda v: "T" if v else "F"),
    st.integers(-(2**63), 2**63).map(str),
    st.integers(0, 999).map(lambda v: f"+{v:05d}"),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(-1e30, 1e30, allow_nan=False).map(lambda v: f"{v:.12E}".replace("E", "D")),
    st.sampled_from(["5.", ".5", "-0.0", "1E+5", "1.5e3"]),
    st.tuples(st.integers(-99, 99), st.floats(-1e3, 1e3)).map(lambda c: f"({c[0]}, {c[1]!r})"),
    TEXT.map(quoted),
    st.just(""),  # no value
)


@st.composite
def valued_card(draw) -> list[str]:
    key, value, comment = draw(KEYS), draw(VALUES), draw(COMMENTS)
    pad = draw(st.sampled_from(["", " ", "          "]))
    if draw(st.booleans()) and not value.startswith("'"):
        value = f"{value:>20}"  # fixed format: right-justified in columns 11-30
    return [f"{key:<8}= {pad}{value}{comment}"]


@st.composite
def continued_string(draw) -> list[str]:
    """A long string as the CONTINUE convention writes it: '&' ends each piece but the last."""
    key = draw(KEYS)
    pieces = draw(st.lists(TEXT.filter(lambda t: len(t.replace("'", "''")) < 60), min_size=2))
    cards = [f"{key:<8}= {quoted(pieces[0] + '&')}"]
    for piece in pieces[1:-1]:
        cards.append(f"CONTINUE  {quoted(piece + '&')}{draw(COMMENTS)}")
    cards.append(f"CONTINUE  {quoted(pieces[-1])}{draw(COMMENTS)}")
    return cards


@st.composite
def astropy_card(draw) -> list[str]:
    """A card as astropy writes it (long strings become CONTINUE cards).

    Long strings hold no quote: astropy's writer may cut a doubled quote between two cards,
    which the standard does not allow and only astropy's own reader puts back together.
    """
    long = TEXT.filter(lambda t: "'" not in t).map(lambda t: t * 9)
    value = draw(st.one_of(st.integers(-(10**9), 10**9), st.booleans(), TEXT, long))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a comment too long for the card is cut
        image = fits.Card(draw(KEYS), value, draw(NOTES.filter(lambda t: "&" not in t))).image
    return [image[i : i + CARD] for i in range(0, len(image), CARD)]


WORDS = st.lists(
    st.sampled_from(["ESO", "DET", "CHIP", "TEL", "A", "LONGWORD"]), min_size=2, max_size=4
)
HIERARCH = st.tuples(WORDS, VALUES.filter(lambda v: v != "")).map(
    lambda kv: [f"HIERARCH {' '.join(kv[0])} = {kv[1]}"]
)
COMMENTARY = st.sampled_from([[""], ["COMMENT this is = 'not a value'"], ["HISTORY  = 3"]]).map(
    list
)
CARD_GROUPS = st.lists(
    st.one_of(valued_card(), continued_string(), astropy_card(), HIERARCH, COMMENTARY),
    max_size=40,
)


def header_bytes(groups: list[list[str]], *, end: bool = True) -> bytes:
    cards = ["SIMPLE  =                    T"] + [c for group in groups for c in group]
    cards += ["END"] if end else []
    text = "".join(f"{card:<{CARD}}" for card in cards)
    return (text + " " * (-len(text) % BLOCK)).encode("ascii")


def typed(value):
    """A value with its type, so that True and 1, or 1 and 1.0, do not compare equal."""
    return (type(value).__name__, value)


def astropy_values(path) -> dict:
    """Keyword -> value as astropy reads it (the first of duplicates), commentary left out."""
    header = fits.Header.fromfile(str(path))
    return {key: typed(header[key]) for key in header if key not in ("", "COMMENT", "HISTORY")}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(groups=CARD_GROUPS)
def test_cards_equal_astropys_reading(tmp_path, groups):
    groups = [g for g in groups if all(len(card) <= CARD for card in g)]
    path = tmp_path / "h.fits"
    path.write_bytes(header_bytes(groups))
    header = primary_header(path.read_bytes(), path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = astropy_values(path)
    assert {key: typed(value) for key, value in header.cards.items()} == expected
    assert header.length == len(path.read_bytes())


def test_quotes_where_astropy_misreads_the_string(tmp_path):
    """The FITS standard's reading, where astropy's pattern stops at a quote before a slash
    or reads on into the comment (its issue 18831)."""
    cards = [
        ["Q       = '''/' / c"],
        ["E       = '' / it's a comment"],
        ["R       = 'a&'", "CONTINUE  'x''/y&'", "CONTINUE  ''' / z' / c"],
    ]
    read = primary_header(header_bytes(cards), tmp_path / "q.fits").cards
    assert (read["Q"], read["E"], read["R"]) == ("'/", "", "ax'/y' / z")


BAD_VALUES = ["3x4", "'unterminated", "1 junk", "'x' junk", "t", "NaN", "(1, 2"]


@pytest.mark.parametrize("bad", BAD_VALUES)
def test_a_bad_value_raises_when_asked_for_as_astropy_does(tmp_path, bad):
    path = tmp_path / "odd.fits"
    path.write_bytes(header_bytes([[f"BAD     = {bad}"], ["GOOD    = 'fine'"]]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = fits.Header.fromfile(str(path))
        with pytest.raises(VerifyError):
            theirs["BAD"]
    cards = primary_header(path.read_bytes(), path).cards
    assert cards["GOOD"] == theirs["GOOD"] == "fine"  # the odd card does not spoil the rest
    assert "BAD" in cards
    with pytest.raises(FormatError, match=r"odd\.fits: header card BAD: "):
        cards["BAD"]


def test_continue_after_a_number_is_a_bad_value(tmp_path):
    path = tmp_path / "c.fits"
    path.write_bytes(header_bytes([["N       = 1"], ["CONTINUE  'more'"]]))
    with pytest.raises(FormatError, match=r"c\.fits: header card N: a CONTINUE card"):
        primary_header(path.read_bytes(), path).cards["N"]


@pytest.mark.parametrize(
    "content, cause",
    [
        (b"", "not a FITS file: it is empty"),
        (b"hello" * 1000, "not a FITS file: it does not start with a SIMPLE card"),
        (header_bytes([["A       = 1"]], end=False), r"truncated FITS header \(no END card"),
        (header_bytes([["A       = 1"]] * 40, end=False), r"truncated FITS header \(no END card"),
        (header_bytes([])[:150], r"truncated FITS header \(no END card"),
    ],
)
def test_bad_headers_name_the_file_and_the_cause(tmp_path, content, cause):
    path = tmp_path / "bad.fits"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=r"bad\.fits: " + cause):
        primary_header(content, path)
    with open(path, "rb") as handle, pytest.raises(FormatError, match=r"bad\.fits: " + cause):
        list(headers(handle, path))


def test_end_inside_a_short_last_block_ends_the_header(tmp_path):
    """A header is complete at its END card, even when the file stops before the block does."""
    data = header_bytes([["A       = 1"]])[: 3 * CARD]
    assert dict(primary_header(data, tmp_path / "short.fits").cards) == {"SIMPLE": True, "A": 1}


@pytest.mark.parametrize("opener", [open, gzip.open])
def test_headers_walks_every_hdu_as_astropy_does(tmp_path, opener):
    hdus = fits.HDUList(
        [
            fits.PrimaryHDU(np.zeros((3, 5), np.int16)),
            fits.ImageHDU(np.ones((7, 2), np.float64), name="N4"),
            fits.BinTableHDU.from_columns([fits.Column("x", "J", array=np.arange(9))]),
            fits.ImageHDU(None, name="EMPTY"),
        ]
    )
    for i, hdu in enumerate(hdus):
        hdu.header["CCDNUM"] = i
        hdu.header["NOTE"] = "x" * 100  # a CONTINUE card in every header
    path = tmp_path / ("m.fits.gz" if opener is gzip.open else "m.fits")
    hdus.writeto(path)
    with opener(path, "rb") as handle:
        ours = [dict(header.cards) for header in headers(handle, path)]
    with fits.open(path) as theirs:
        expected = [{k: hdu.header[k] for k in hdu.header if k != "COMMENT"} for hdu in theirs]
    assert ours == expected
