"""The DetReg bytes: record layouts, header cards, both byte orders, round trips."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nightlake.detrends.detreg import (
    OPEN_ENDED,
    RECORD_DTYPE,
    TYPE_CODES,
    TYPE_NAMES,
    make_records,
    read_db,
    record_dtype,
    write_db,
)
from nightlake.errors import InputError

from .handmade import SAMPLE, handmade_file

OPEN_32 = 2**32 - 1

# From the issue text: offsets 0/8/16/24/28/32/36/40/44/298/299 and 304 bytes for LP64.
LP64_OFFSETS = {
    "tstart": 0,
    "tstop": 8,
    "treg": 16,
    "sigma": 24,
    "clipsigma": 28,
    "type": 32,
    "filter": 36,
    "ccd": 40,
    "filename": 44,
    "flag1": 298,
    "flag2": 299,
}
# Worked out by hand for 4-byte longs.
ILP32_OFFSETS = {
    "tstart": 0,
    "tstop": 4,
    "treg": 8,
    "sigma": 12,
    "clipsigma": 16,
    "type": 20,
    "filter": 24,
    "ccd": 28,
    "filename": 32,
    "flag1": 286,
    "flag2": 287,
}


def test_type_codes_are_the_elixir_ones():
    assert TYPE_CODES == {"bias": 1, "dark": 2, "flat": 3, "fringe": 4, "mask": 5}
    assert TYPE_NAMES == {v: k for k, v in TYPE_CODES.items()}
    assert OPEN_ENDED == 2**64 - 1


@pytest.mark.parametrize(
    "layout,offsets,size", [("LP64", LP64_OFFSETS, 304), ("ILP32", ILP32_OFFSETS, 288)]
)
@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_record_dtype_offsets(layout, offsets, size, byteorder):
    dtype = record_dtype(layout, byteorder)
    assert dtype.itemsize == size
    assert {name: dtype.fields[name][1] for name in dtype.names} == offsets


def test_c_compiler_agrees_with_the_lp64_offsets(c_tool):
    import subprocess

    out = subprocess.run([str(c_tool), "layout"], check=True, capture_output=True, text=True)
    got = dict(line.split() for line in out.stdout.splitlines())
    assert int(got.pop("sizeof")) == 304
    assert {k: int(v) for k, v in got.items()} == LP64_OFFSETS


def _expected(rows, *, open_ended_as=OPEN_ENDED):
    return make_records(
        [dict(r, tstop=open_ended_as if r["tstop"] is None else r["tstop"]) for r in rows]
    )


@pytest.mark.parametrize("layout", ["LP64", "ILP32"])
@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_handmade_files_read_back(tmp_path, layout, byteorder):
    open_value = OPEN_ENDED if layout == "LP64" else OPEN_32
    rows = [dict(r, tstop=open_value if r["tstop"] is None else r["tstop"]) for r in SAMPLE]
    path = tmp_path / "hand.db"
    path.write_bytes(handmade_file(layout, byteorder, rows, filters={1: "VR DECam c0007"}))
    db = read_db(path)
    assert (db.layout, db.byteorder, len(db)) == (layout, byteorder, 3)
    assert db.filters == {1: "VR DECam c0007"}
    assert db.records.dtype == RECORD_DTYPE
    expected = _expected(SAMPLE)
    for name in RECORD_DTYPE.names:
        assert np.array_equal(db.records[name], expected[name]), name
    assert db.records["tstop"][1] == OPEN_ENDED  # the 32-bit all-ones maps to the 64-bit one


@pytest.mark.parametrize("layout", ["LP64", "ILP32"])
@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_written_records_are_byte_identical_to_handmade(tmp_path, layout, byteorder):
    open_value = OPEN_ENDED if layout == "LP64" else OPEN_32
    rows = [dict(r, tstop=open_value if r["tstop"] is None else r["tstop"]) for r in SAMPLE]
    hand = handmade_file(layout, byteorder, rows)
    ours = tmp_path / "ours.db"
    write_db(ours, _expected(SAMPLE), {}, layout=layout, byteorder=byteorder)
    data = ours.read_bytes()
    assert len(data) == len(hand) and len(data) % 2880 == 0
    assert data[2880:] == hand[2880:]  # records and padding (headers differ in DATE/comments)


def test_layout_card_may_be_absent(tmp_path):
    rows = [dict(r, tstop=OPEN_32 if r["tstop"] is None else r["tstop"]) for r in SAMPLE]
    path = tmp_path / "nolayout.db"
    path.write_bytes(handmade_file("ILP32", "big", rows, with_layout=False))
    db = read_db(path)
    assert db.layout == "ILP32" and len(db) == 3


def test_a_writer_keeps_layout_and_byteorder(tmp_path):
    from nightlake.detrends.detreg import add_records

    path = tmp_path / "old.db"
    rows = [dict(r, tstop=OPEN_32 if r["tstop"] is None else r["tstop"]) for r in SAMPLE]
    path.write_bytes(handmade_file("ILP32", "big", rows))
    after = add_records(
        path, make_records([{"type": "bias", "tstart": 5, "tstop": 9, "filename": "/b.fits"}])
    )
    db = read_db(path)
    assert (
        (db.layout, db.byteorder, len(db))
        == ("ILP32", "big", 4)
        == (after.layout, after.byteorder, len(after))
    )


def test_file_is_valid_fits_with_the_cards(tmp_path):
    from astropy.io import fits

    path = tmp_path / "d.db"
    write_db(path, _expected(SAMPLE), {3: "VR DECam c0007 6300.0 2600.0", 1: "g"})
    assert path.stat().st_size % 2880 == 0
    with fits.open(path) as hdul:
        hdul.verify("exception")
        header = hdul[0].header
        assert header["SIMPLE"] is True and header["BITPIX"] == 8 and header["NAXIS"] == 1
        assert header["NAXIS1"] == 3 * 304 and header["EXTEND"] is False
        assert header["DBTYPE"] == "DETREG" and header["DBVERS"] == 1
        assert (header["RECSIZE"], header["NRECORD"]) == (304, 3)
        assert (header["BYTEORD"], header["LAYOUT"]) == ("LITTLE", "LP64")
        assert header["FILT3"] == "VR DECam c0007 6300.0 2600.0" and header["FILT1"] == "g"
        assert len(header["DATE"]) == 19
        data = hdul[0].data
        assert data.shape == (3 * 304,)
        assert bytes(data[:8]) == (1400000000).to_bytes(8, "little")


def test_empty_database_is_valid(tmp_path):
    path = tmp_path / "empty.db"
    write_db(path, make_records([]), {})
    db = read_db(path)
    assert len(db) == 0 and db.to_arrow().num_rows == 0
    assert path.stat().st_size == 2880


def test_filter_names_with_quotes_survive(tmp_path):
    path = tmp_path / "q.db"
    write_db(path, make_records([]), {7: "it's r"})
    assert read_db(path).filters == {7: "it's r"}


def test_ilp32_refuses_times_that_do_not_fit(tmp_path):
    path = tmp_path / "small.db"
    big = make_records([{"type": "bias", "tstart": 2**32, "tstop": None}])
    with pytest.raises(InputError, match="tstart = 4294967296 does not fit"):
        write_db(path, big, {}, layout="ILP32")
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_ilp32_refuses_a_finite_tstop_that_would_read_as_open_ended(tmp_path):
    path = tmp_path / "small.db"
    rec = make_records([{"type": "bias", "tstart": 0, "tstop": OPEN_32}])
    with pytest.raises(InputError, match="tstop = 4294967295 does not fit"):
        write_db(path, rec, {}, layout="ILP32")
    ok = make_records([{"type": "bias", "tstart": OPEN_32, "treg": OPEN_32, "tstop": None}])
    write_db(path, ok, {}, layout="ILP32", byteorder="big")
    back = read_db(path).records
    assert (int(back["tstart"][0]), int(back["tstop"][0])) == (OPEN_32, OPEN_ENDED)


def test_write_db_copies_to_another_path(tmp_path):
    src = tmp_path / "a.db"
    write_db(src, _expected(SAMPLE), {2: "r"}, layout="ILP32", byteorder="big")
    db = read_db(src)
    copy = write_db(
        tmp_path / "b.db", db.records, db.filters, layout=db.layout, byteorder=db.byteorder
    )
    again = read_db(tmp_path / "b.db")
    assert (copy.layout, again.layout, again.byteorder, again.filters) == (
        "ILP32",
        "ILP32",
        "big",
        {2: "r"},
    )
    assert again.records.tobytes() == read_db(src).records.tobytes()


@pytest.mark.parametrize("layout", ["LP64", "ILP32"])
def test_padding_in_memory_never_reaches_the_file(tmp_path, layout):
    # C leaves padding undefined; our files always hold zeros there, whatever the records'
    # memory holds (numpy's astype, for one, leaves it as it found it)
    recs = _expected(SAMPLE).copy()
    recs.view(np.uint8).reshape(len(recs), RECORD_DTYPE.itemsize)[:, 300:] = 0xAB
    write_db(tmp_path / "dirty.db", recs, {}, layout=layout)
    write_db(tmp_path / "clean.db", _expected(SAMPLE), {}, layout=layout)
    dirty, clean = (tmp_path / "dirty.db").read_bytes(), (tmp_path / "clean.db").read_bytes()
    assert b"\xab" not in dirty and dirty[2880:] == clean[2880:]


@pytest.mark.parametrize(
    "layout, byteorder", [("LP64", "big"), ("ILP32", "little"), ("ILP32", "big")]
)
def test_foreign_records_come_out_with_zero_padding(tmp_path, layout, byteorder):
    path = tmp_path / "f.db"
    write_db(path, _expected(SAMPLE), {}, layout=layout, byteorder=byteorder)
    recs = read_db(path).raw_records
    assert not recs.view(np.uint8).reshape(len(recs), RECORD_DTYPE.itemsize)[:, 300:].any()


def test_make_records_defaults_and_names():
    recs = make_records([{"type": "flat", "filename": "/x.fits"}])
    assert recs["type"][0] == 3 and recs["tstop"][0] == OPEN_ENDED and recs["filter"][0] == -1
    assert recs["filename"][0] == b"/x.fits"
    with pytest.raises(ValueError, match="unknown detrend type"):
        make_records([{"type": "sky"}])
    with pytest.raises(ValueError, match="longer than 253"):
        make_records([{"type": "flat", "filename": "x" * 254}])


def test_to_arrow_has_index_and_str_filenames(tmp_path):
    path = tmp_path / "d.db"
    write_db(path, _expected(SAMPLE), {})
    table = read_db(path).to_arrow()
    assert table.column_names == ["index", *RECORD_DTYPE.names]
    assert table["index"].to_pylist() == [0, 1, 2]
    assert table["filename"].to_pylist() == [r["filename"].decode() for r in SAMPLE]
    assert table["tstop"].to_pylist()[1] == OPEN_ENDED
    assert str(table.schema.field("tstart").type) == "uint64"
    assert str(table.schema.field("flag1").type) == "int8"


def test_fingerprint_identifies_the_bytes(tmp_path):
    import hashlib

    path = tmp_path / "d.db"
    write_db(path, _expected(SAMPLE), {})
    fp = read_db(path).fingerprint
    assert fp == {
        "path": str(path.absolute()),
        "size": path.stat().st_size,
        "mtime_ns": path.stat().st_mtime_ns,
        "inode": path.stat().st_ino,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def test_records_are_read_only(tmp_path):
    path = tmp_path / "d.db"
    write_db(path, _expected(SAMPLE), {})
    db = read_db(path)
    with pytest.raises(ValueError):
        db.records["ccd"][0] = 3


def test_raw_records_keep_bytes_after_the_nul_and_need_no_pyarrow(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "dirty.db"
    dirty = dict(SAMPLE[0], filename=b"/deep/flat.fits\0junk")
    path.write_bytes(handmade_file("LP64", "little", [dirty, SAMPLE[2]]))
    db = read_db(path)
    assert bytes(db.raw_records["filename"][0]) == b"/deep/flat.fits\0junk"
    assert bytes(db.records["filename"][0]) == b"/deep/flat.fits"
    for name in RECORD_DTYPE.names:
        if name != "filename":
            assert np.array_equal(db.raw_records[name], db.records[name], equal_nan=True)
    script = (
        "import sys; from nightlake.detrends.detreg import read_db; "
        f"r = read_db({str(path)!r}).raw_records; assert len(r) == 2; "
        "assert 'pyarrow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


# ---- property: write -> read is the identity, for both layouts and byte orders

_u64 = st.integers(0, OPEN_ENDED)
_u32 = st.integers(0, OPEN_32)
_u32_stop = st.one_of(st.integers(0, OPEN_32 - 1), st.just(OPEN_ENDED))
_f32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
_i32 = st.integers(-(2**31), 2**31 - 1)
_i8 = st.integers(-128, 127)
_name = st.binary(max_size=253).map(lambda b: b.replace(b"\0", b"x"))


def _records(time, stop):
    row = st.fixed_dictionaries(
        {
            "tstart": time,
            "tstop": stop,
            "treg": time,
            "sigma": _f32,
            "clipsigma": _f32,
            "type": st.integers(1, 5),
            "filter": _i32,
            "ccd": _i32,
            "filename": _name,
            "flag1": _i8,
            "flag2": _i8,
        }
    )
    return st.lists(row, max_size=12)


def _check_round_trip(tmp_path, rows, layout, byteorder):
    records = make_records(rows)
    path = tmp_path / f"rt-{layout}-{byteorder}.db"
    write_db(path, records, {1: "g"}, layout=layout, byteorder=byteorder)
    db = read_db(path)
    assert db.records.dtype == RECORD_DTYPE and len(db) == len(rows)
    # bitwise, -0.0 included; every NaN is written as numpy's one NaN (the journal keeps a
    # NaN as null, so a replay could not rebuild another payload's bytes)
    for name in ("sigma", "clipsigma"):
        records[name][np.isnan(records[name])] = np.nan
    assert db.records.tobytes() == records.tobytes() or all(
        np.array_equal(
            db.records[n].view(f"u{db.records[n].dtype.itemsize}")
            if db.records[n].dtype.kind == "f"
            else db.records[n],
            records[n].view(f"u{records[n].dtype.itemsize}")
            if records[n].dtype.kind == "f"
            else records[n],
        )
        for n in RECORD_DTYPE.names
    )
    assert db.to_arrow()["filename"].to_pylist() == [
        r["filename"].decode("utf-8", "backslashreplace") for r in rows
    ]


_settings = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.parametrize("byteorder", ["little", "big"])
@_settings
@given(rows=_records(_u64, _u64))
def test_round_trip_lp64(tmp_path, byteorder, rows):
    _check_round_trip(tmp_path, rows, "LP64", byteorder)


@pytest.mark.parametrize("byteorder", ["little", "big"])
@_settings
@given(rows=_records(_u32, _u32_stop))
def test_round_trip_ilp32(tmp_path, byteorder, rows):
    _check_round_trip(tmp_path, rows, "ILP32", byteorder)


# ---- filenames cut at their NUL: the compiled scan (_columns.c), pyarrow's fallback, bytes.split


@st.composite
def raw_filename_fields(draw):
    """254-byte fields as C writers leave them: a name (any bytes but NUL, possibly not
    UTF-8), its NUL, then zeros or leftover garbage."""
    n = draw(st.integers(0, 40))
    fields = []
    for _ in range(n):
        name = draw(st.binary(max_size=253).map(lambda b: b.replace(b"\0", b"x")))
        rest = 254 - len(name) - 1
        tail = draw(st.one_of(st.just(b"\0" * rest), st.binary(min_size=rest, max_size=rest)))
        fields.append(name + b"\0" + tail)
    return fields


def _records_with(fields):
    recs = np.zeros(len(fields), dtype=RECORD_DTYPE)
    raw = recs.view(np.uint8).reshape(len(fields), RECORD_DTYPE.itemsize)
    for i, field in enumerate(fields):
        raw[i, 44:298] = np.frombuffer(field, np.uint8)
    return recs


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(raw_filename_fields())
def test_filenames_compiled_and_fallback_cut_at_the_first_nul(fields):
    import pyarrow as pa

    from nightlake.detrends.detreg.format import columns_as_arrow

    recs = _records_with(fields)
    expected = [f.split(b"\0", 1)[0] for f in fields]
    for compiled in (True, False):
        got = columns_as_arrow(recs, compiled=compiled)["filename"]
        assert got.cast(pa.binary()).to_pylist() == expected, compiled
        if pa.types.is_string(got.type):  # only claimed when every name is ASCII
            assert all(b.isascii() for b in expected)
    if all(b.isascii() for b in expected):
        assert pa.types.is_string(columns_as_arrow(recs)["filename"].type)


@pytest.mark.parametrize(
    "layout, byteorder",
    [
        ("LP64", "native"),
        ("LP64", "big"),
        ("LP64", "little"),
        ("ILP32", "little"),
        ("ILP32", "big"),
    ],
)
@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 60), seed=st.integers(0, 2**32 - 1))
def test_columns_compiled_and_fallback_are_the_native_fields_bit_for_bit(
    layout, byteorder, n, seed
):
    """Records of any layout, any bytes (NaN floats, negative codes, open-ended times) but a
    NUL-terminated name: the compiled pass straight from the file's records and the numpy path
    through native records give the same columns, equal to numpy's native fields."""
    from nightlake.detrends.detreg.format import FIELDS, columns_as_arrow, to_native

    rng = np.random.default_rng(seed)
    dtype = record_dtype(layout, byteorder)
    recs = rng.integers(0, 256, n * dtype.itemsize, np.uint8).view(dtype).copy()
    recs["filename"] = b"x"
    if n:
        recs["tstop"][rng.random(n) < 0.3] = 2**64 - 1 if layout == "LP64" else OPEN_32
    native = to_native(recs)
    for compiled in (True, False):
        got = columns_as_arrow(recs, compiled=compiled)
        assert list(got) == list(FIELDS)
        for name in FIELDS[:8] + ("flag1", "flag2"):
            expected = np.ascontiguousarray(native[name])
            assert got[name].type == pa.from_numpy_dtype(expected.dtype), name
            data = got[name].buffers()[1].to_pybytes()[: expected.nbytes]
            assert data == expected.tobytes(), (compiled, name)
    if n and layout == "ILP32":
        assert (native["tstop"][recs["tstop"] == OPEN_32] == OPEN_ENDED).all()


def test_the_compiled_pass_is_built_and_matches_the_record_layout():
    # without it reading is correct but slower (docs/design.md): make sure the build hook
    # (hatch_build.py) produced the library here and in CI, for this RECORD_DTYPE
    from nightlake.detrends.detreg.format import _library

    assert _library() is not None


def test_the_compiled_pass_refuses_a_name_without_its_nul():
    from nightlake.detrends.detreg.format import columns_as_arrow

    recs = _records_with([b"a" * 254])
    with pytest.raises(ValueError, match="record 0: filename has no NUL within 254 bytes"):
        columns_as_arrow(recs)


def test_records_from_json_is_the_inverse_of_the_journal_form():
    """The journal's JSON form of a record reads back to the same bytes: NaN sigma (null),
    a filename that is not UTF-8, the open-ended tstop, a dark's exposure time."""
    from nightlake.detrends.detreg.format import records_from_json
    from nightlake.detrends.detreg.record import DetRegRecord

    records = make_records(
        [
            {"type": "flat", "ccd": 3, "filter": 2, "tstart": 5, "tstop": 9, "treg": 4,
             "sigma": float("nan"), "clipsigma": 2.5, "filename": b"/m/caf\xe9.fits"},
            {"type": "dark", "ccd": 7, "filter": 30, "tstart": 1, "tstop": None, "treg": 2,
             "sigma": 0.5, "clipsigma": float("nan"), "filename": b"/m/d30.fits", "flag1": 1},
        ]
    )  # fmt: skip
    rows = [DetRegRecord.from_raw(r, {2: "g"}).to_json() for r in records]
    assert rows[0]["sigma"] is None and rows[0]["filename"] == "/m/caf\udce9.fits"
    again = records_from_json(json.loads(json.dumps(rows)))
    assert again.tobytes() == records.tobytes()
    with pytest.raises(ValueError, match="ccd"):
        records_from_json([{k: v for k, v in rows[0].items() if k != "ccd"}])
    for odd in (5, 10**12, [1, 2], {"a": 1}):  # a hand-edited journal
        with pytest.raises(ValueError, match=f"^filename is {type(odd).__name__}, not text$"):
            records_from_json([{**rows[0], "filename": odd}])
