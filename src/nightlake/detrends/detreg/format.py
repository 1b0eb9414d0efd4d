"""The DetReg file format: FITS header cards and the C record layouts (LP64 and ILP32).

A DetReg file is a valid FITS primary HDU (``BITPIX = 8``, ``NAXIS = 1``) whose data are
NRECORD C structures back to back, exactly as a C compiler lays out::

    typedef struct {
      unsigned long int tstart, tstop, treg;   /* Unix seconds, UTC */
      float sigma, clipsigma;
      int type, filter, ccd;
      char filename[254];
      char flag1, flag2;
    } DetReg;

Records are decoded with numpy structured dtypes built from explicit offsets, so reading and
writing never loop over records in Python. In memory, records always use :data:`RECORD_DTYPE`
(native byte order, 64-bit times), whatever the layout and byte order of the file.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import numpy as np

from nightlake.detrends.detreg.record import (  # noqa: F401  (re-exported)
    ANY_FILTER,
    OPEN_ENDED,
    TYPE_CODES,
    TYPE_NAMES,
)
from nightlake.errors import FormatError
from nightlake.fits import BLOCK, CARD

#: All bits set in the 32-bit unsigned long of an ILP32 file.
OPEN_ENDED_32 = 2**32 - 1

FILENAME_SIZE = 254
MAX_FILENAME_BYTES = FILENAME_SIZE - 1  # the C string needs its NUL

FIELDS = (
    "tstart",
    "tstop",
    "treg",
    "sigma",
    "clipsigma",
    "type",
    "filter",
    "ccd",
    "filename",
    "flag1",
    "flag2",
)

# Offsets as a C compiler lays the struct out; see docs/detreg-format.md for the tables.
LAYOUTS: dict[str, dict] = {
    "LP64": {
        "recsize": 304,
        "ulong": 8,
        "offsets": (0, 8, 16, 24, 28, 32, 36, 40, 44, 298, 299),
    },
    "ILP32": {
        "recsize": 288,
        "ulong": 4,
        "offsets": (0, 4, 8, 12, 16, 20, 24, 28, 32, 286, 287),
    },
}
RECSIZE_LAYOUT = {spec["recsize"]: name for name, spec in LAYOUTS.items()}
BYTEORDERS = {"little": "<", "big": ">"}
BYTEORD_CARD = {"little": "LITTLE", "big": "BIG"}


def record_dtype(layout: str = "LP64", byteorder: str = "native") -> np.dtype:
    """The numpy dtype of one record of ``layout`` ('LP64'/'ILP32') in ``byteorder``."""
    spec = LAYOUTS[layout]
    bo = "=" if byteorder == "native" else BYTEORDERS[byteorder]
    ulong = f"{bo}u{spec['ulong']}"
    formats = [
        ulong,
        ulong,
        ulong,
        f"{bo}f4",
        f"{bo}f4",
        f"{bo}i4",
        f"{bo}i4",
        f"{bo}i4",
        f"S{FILENAME_SIZE}",
        "i1",
        "i1",
    ]
    return np.dtype(
        {
            "names": list(FIELDS),
            "formats": formats,
            "offsets": list(spec["offsets"]),
            "itemsize": spec["recsize"],
        }
    )


#: The in-memory record dtype: the LP64 layout in native byte order.
RECORD_DTYPE = record_dtype("LP64", "native")


# --------------------------------------------------------------------------------------------
# Header cards (read by nightlake.fits.primary_header)


def _card(key: str, value: object, comment: str = "") -> str:
    if isinstance(value, bool):
        text = f"{'T' if value else 'F':>20}"
    elif isinstance(value, int):
        text = f"{value:>20d}"
    else:
        escaped = str(value).replace("'", "''")
        text = f"'{escaped:<8}'"
        text = f"{text:<20}"
    card = f"{key:<8}= {text}"
    if comment:
        card += f" / {comment}"
    if len(card) > CARD:
        if len(f"{key:<8}= {text}") > CARD:
            raise ValueError(f"value of {key} too long for one FITS card: {value!r}")
        card = card[:CARD]
    return f"{card:<{CARD}}"


def max_filter_name_length() -> int:
    """Longest filter name one FILT card holds (quotes included in the 70 value columns)."""
    return CARD - 10 - 2


#: The optional OVERLAPS card: 'FORBID' makes ``detregister add`` refuse a record whose range
#: overlaps one of its class; absent (every file before it, and the default) allows overlaps.
OVERLAP_POLICIES = ("allow", "forbid")


def overlap_policy(cards: Mapping[str, object], path: Path | str) -> str:
    """'forbid' when the header carries OVERLAPS = 'FORBID', else 'allow'."""
    value = cards.get("OVERLAPS")
    if value is None:
        return "allow"
    if not isinstance(value, str) or value.lower() not in OVERLAP_POLICIES:
        raise FormatError(path, f"OVERLAPS card: expected 'ALLOW' or 'FORBID', found {value!r}")
    return value.lower()


def build_header(
    *,
    nrecord: int,
    layout: str,
    byteorder: str,
    filters: dict[int, str],
    date: str,
    overlaps: str = "allow",
) -> bytes:
    """The header blocks of a DetReg file (cards, END, blank-padded to 2880 bytes).

    A file that forbids overlaps says so with DBVERS = 2 and an OVERLAPS card; any other file
    is written byte for byte as before (DBVERS = 1, no OVERLAPS card).
    """
    recsize = LAYOUTS[layout]["recsize"]
    forbid = overlaps == "forbid"
    cards = [
        _card("SIMPLE", True, "a FITS primary HDU holding a DetReg database"),
        _card("BITPIX", 8, "bytes"),
        _card("NAXIS", 1),
        _card("NAXIS1", nrecord * recsize, "NRECORD * RECSIZE"),
        _card("EXTEND", False),
        _card("DBTYPE", "DETREG", "detrend registry"),
        _card("DBVERS", 2 if forbid else 1, "format version"),
        _card("RECSIZE", recsize, "bytes per record"),
        _card("NRECORD", nrecord, "number of records"),
        _card("BYTEORD", BYTEORD_CARD[byteorder], "byte order of the records"),
        _card("LAYOUT", layout, "C data model of the records"),
    ]
    if forbid:
        cards.append(_card("OVERLAPS", "FORBID", "detregister add refuses overlapping records"))
    for code in sorted(filters):
        name = filters[code]
        if len(name.replace("'", "''")) > max_filter_name_length():
            raise ValueError(f"filter name too long for a FITS card: {name!r}")
        cards.append(_card(f"FILT{code}", name))
    cards.append(_card("DATE", date, "UTC time of the last write"))
    cards.append(f"{'END':<{CARD}}")
    text = "".join(cards)
    text += " " * (-len(text) % BLOCK)
    return text.encode("ascii")


def filters_from_cards(cards: Mapping[str, object], path: Path | str) -> dict[int, str]:
    """The FILT<code> table of a header, code -> name."""
    filters: dict[int, str] = {}
    for key in cards:
        m = re.fullmatch(r"FILT(\d+)", key)
        if m:
            value = cards[key]
            if not isinstance(value, str):
                raise FormatError(
                    path, f"header card {key}: expected a quoted filter name, found {value!r}"
                )
            filters[int(m.group(1))] = value
    return filters


# --------------------------------------------------------------------------------------------
# Records


def layout_of(cards: Mapping[str, object], path: Path | str) -> tuple[str, str, int]:
    """Validate the structural cards; return (layout, byteorder, nrecord)."""
    if "DBTYPE" not in cards:
        raise FormatError(
            path, "DBTYPE card missing: not a DetReg database (expected DBTYPE = 'DETREG')"
        )
    if cards["DBTYPE"] != "DETREG":
        raise FormatError(
            path, f"DBTYPE is {cards['DBTYPE']!r}, expected 'DETREG': not a DetReg database"
        )
    for key in ("RECSIZE", "NRECORD", "NAXIS1"):
        value = cards.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            found = "missing" if key not in cards else f"{value!r}"
            raise FormatError(path, f"{key} card: expected a non-negative integer, found {found}")
    recsize, nrecord = cards["RECSIZE"], cards["NRECORD"]
    if recsize not in RECSIZE_LAYOUT:
        raise FormatError(path, f"RECSIZE is {recsize}, expected 304 (LP64) or 288 (ILP32)")
    layout = cards.get("LAYOUT")
    if layout is None:
        layout = RECSIZE_LAYOUT[recsize]
    elif layout not in LAYOUTS:
        raise FormatError(path, f"LAYOUT is {layout!r}, expected 'LP64' or 'ILP32'")
    elif LAYOUTS[layout]["recsize"] != recsize:
        raise FormatError(
            path, f"RECSIZE is {recsize} but LAYOUT {layout!r} needs {LAYOUTS[layout]['recsize']}"
        )
    byteord = cards.get("BYTEORD")
    byteorder = {"LITTLE": "little", "BIG": "big"}.get(byteord)  # type: ignore[arg-type]
    if byteorder is None:
        found = "missing" if byteord is None else repr(byteord)
        raise FormatError(path, f"BYTEORD card: expected 'LITTLE' or 'BIG', found {found}")
    if cards["NAXIS1"] != nrecord * recsize:
        raise FormatError(
            path,
            f"NAXIS1 is {cards['NAXIS1']}, expected NRECORD x RECSIZE = "
            f"{nrecord} x {recsize} = {nrecord * recsize}",
        )
    return layout, byteorder, nrecord


def validate_records(
    buffer, offset: int, nrecord: int, layout: str, byteorder: str, path: Path | str
) -> np.ndarray:
    """File bytes -> validated, read-only records as the file lays them out (a zero-copy
    view of ``buffer`` in :func:`record_dtype` of the layout and byte order)."""
    records = np.frombuffer(
        buffer, dtype=record_dtype(layout, byteorder), count=nrecord, offset=offset
    )
    # Each check first copies its field out of the strided records: one pass through memory,
    # where comparing on the strided view walks it twice.
    types = np.ascontiguousarray(records["type"])
    bad_type = (types < 1) | (types > len(TYPE_NAMES))
    if bad_type.any():
        i = int(np.flatnonzero(bad_type)[0])
        raise FormatError(
            path,
            f"record {i}: unknown type code {int(types[i])} "
            f"(expected 1 bias, 2 dark, 3 flat, 4 fringe, 5 mask); "
            f"{int(bad_type.sum())} record(s) affected",
        )
    # A filename without its NUL has a non-zero last byte (cheap test) and no NUL at all.
    suspects = np.flatnonzero(np.ascontiguousarray(_last_filename_byte(records)))
    if len(suspects):
        import pyarrow as pa  # only here: detsearch reads databases without loading pyarrow

        cut = pa.array(records["filename"][suspects], type=pa.binary())  # cut at the first NUL
        lengths = np.diff(np.frombuffer(cut.buffers()[1], np.int32, count=len(suspects) + 1))
        missing = suspects[lengths == FILENAME_SIZE]
        if len(missing):
            raise FormatError(
                path,
                f"record {int(missing[0])}: filename has no terminating NUL "
                f"within {FILENAME_SIZE} bytes ({len(missing)} record(s) "
                "affected)",
            )
    if records.flags.writeable:
        records.flags.writeable = False
    return records


def to_native(records: np.ndarray) -> np.ndarray:
    """Records of any file layout -> read-only records in :data:`RECORD_DTYPE` (themselves
    when they are already)."""
    if records.dtype == RECORD_DTYPE:
        return records
    # field by field in C, byte-swapping and widening (the same names in the same order), in
    # one pass where a block copy plus per-field assignments takes one per field
    native = records.astype(RECORD_DTYPE)
    # astype leaves the tail padding as it found the memory
    native.view(np.uint8).reshape(len(native), RECORD_DTYPE.itemsize)[:, _PADDING] = 0
    if records.dtype.itemsize == LAYOUTS["ILP32"]["recsize"]:
        native["tstop"][records["tstop"] == OPEN_ENDED_32] = OPEN_ENDED
    native.flags.writeable = False
    return native


#: the tail padding of an in-memory record (after flag2), zero in every record we hold
_PADDING = slice(RECORD_DTYPE.fields["flag2"][1] + 1, RECORD_DTYPE.itemsize)


def columns_as_arrow(records: np.ndarray, *, compiled: bool = True) -> dict:
    """Every field of ``records`` as an Arrow array, in :data:`FIELDS` order, in native byte
    order and LP64 widths (as :data:`RECORD_DTYPE` holds them) whatever the layout of
    ``records``: :data:`RECORD_DTYPE` or any file's :func:`record_dtype`.

    Filenames are cut at their first NUL as C does: ``string`` when the compiled pass saw only
    ASCII (valid UTF-8 without a check), else ``binary``. The compiled pass (``_columns.c``)
    reads the records once, straight from a file's bytes; ``compiled=False``, or no library,
    converts to native records and copies field by field with numpy (slower: docs/design.md).
    """
    import pyarrow as pa

    n = len(records)
    numbers = [name for name in FIELDS if name != "filename"]
    compiled_pass = _library() if compiled else None
    kind = _FILE_KINDS.get(records.dtype)
    if (
        compiled_pass is None
        or kind is None
        or not records.flags.c_contiguous
        or n * FILENAME_SIZE >= 2**31
    ):
        native = to_native(records)
        columns = {name: pa.array(np.ascontiguousarray(native[name])) for name in numbers}
        # Arrow stops at the first NUL (numpy's S dtype only strips trailing ones).
        columns["filename"] = pa.array(native["filename"], type=pa.binary())
        return {name: columns[name] for name in FIELDS}
    import ctypes

    lib, Columns = compiled_pass
    arrays = {name: np.empty(n, RECORD_DTYPE.fields[name][0]) for name in numbers}
    offsets = np.empty(n + 1, np.int32)
    names = np.empty(max(1, n * (FILENAME_SIZE - 1)), np.uint8)  # pages used only as filled
    out = Columns(
        offsets=offsets.ctypes.data,
        names=names.ctypes.data,
        **{name: array.ctypes.data for name, array in arrays.items()},
    )
    bad, ascii = ctypes.c_int64(-1), ctypes.c_int32(0)
    total = lib.nl_columns(
        records.ctypes.data, n, *kind, ctypes.byref(out), ctypes.byref(bad), ctypes.byref(ascii)
    )
    if total < 0:  # validate_records refuses such files; a caller's own records may not be
        raise ValueError(f"record {bad.value}: filename has no NUL within {FILENAME_SIZE} bytes")
    columns = {name: pa.array(array) for name, array in arrays.items()}  # no copy
    columns["filename"] = pa.Array.from_buffers(
        pa.string() if ascii.value else pa.binary(),
        n,
        [None, pa.py_buffer(offsets), pa.py_buffer(names[:total])],
    )
    return {name: columns[name] for name in FIELDS}


#: (ilp32, swapped) of nl_columns for each record dtype it reads
_FILE_KINDS = {
    record_dtype(layout, order): (int(layout == "ILP32"), int(swapped))
    for layout in LAYOUTS
    for order, swapped in (
        ("native", False),
        ("big" if sys.byteorder == "little" else "little", True),
    )
}


@cache
def _library():
    """``(library, Columns)`` for the library built from ``_columns.c`` (``Columns``: the
    ctypes twin of its struct), or None: not built, or built for record layouts other than
    numpy's dtypes here (then the numpy path is the right one)."""
    import ctypes

    try:
        lib = ctypes.CDLL(str(Path(__file__).with_name("_columns.so")))
    except OSError:
        return None
    lib.nl_record_layout.restype = None
    lib.nl_record_layout.argtypes = [ctypes.c_int32, ctypes.c_void_p]
    for ilp32, layout in enumerate(("LP64", "ILP32")):
        compiled = np.zeros(12, np.int64)
        lib.nl_record_layout(ilp32, compiled.ctypes.data)
        dtype = record_dtype(layout)
        if compiled.tolist() != [dtype.fields[name][1] for name in FIELDS] + [dtype.itemsize]:
            return None

    class Columns(ctypes.Structure):  # the order of Columns in _columns.c
        _fields_ = [
            (name, ctypes.c_void_p)
            for name in (
                "tstart",
                "tstop",
                "treg",
                "sigma",
                "clipsigma",
                "type",
                "filter",
                "ccd",
                "offsets",
                "names",
                "flag1",
                "flag2",
            )
        ]

    lib.nl_columns.restype = ctypes.c_int64
    lib.nl_columns.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int32,
        ctypes.c_int32,
        ctypes.POINTER(Columns),
        ctypes.POINTER(ctypes.c_int64),
        ctypes.POINTER(ctypes.c_int32),
    ]
    return lib, Columns


def drop_bytes_after_nul(records: np.ndarray, filenames) -> np.ndarray:
    """Records whose filenames hold nothing after their NUL (C writers may leave garbage there).

    ``filenames`` are the same names as Arrow binary (cut at the first NUL). Returns
    ``records`` itself when clean, else a read-only fixed copy.
    """
    if not len(records):
        return records
    offsets = np.frombuffer(
        filenames.buffers()[1], np.int32, count=len(records) + 1, offset=filenames.offset * 4
    )
    dirty = np.flatnonzero(np.strings.str_len(records["filename"]) != np.diff(offsets))
    if not len(dirty):
        return records
    fixed = records.copy()
    for i in dirty:
        fixed["filename"][i] = filenames[int(i)].as_py()
    fixed.flags.writeable = False
    return fixed


def _last_filename_byte(records: np.ndarray) -> np.ndarray:
    """The 254th byte of every filename (non-zero only if the NUL may be missing), for
    records of any layout."""
    as_bytes = records.view(np.uint8).reshape(len(records), records.dtype.itemsize)
    return as_bytes[:, records.dtype.fields["filename"][1] + FILENAME_SIZE - 1]


def encode_records(records: np.ndarray, layout: str, byteorder: str) -> bytes:
    """Records (fields as :data:`RECORD_DTYPE`) -> the bytes of the data part of a file."""
    if records.dtype.names != FIELDS:
        raise ValueError(f"records need the fields {FIELDS}, found {records.dtype.names}")
    check_writable(records, layout)
    file_dtype = record_dtype(layout, byteorder)
    # A zeroed buffer keeps the padding bytes deterministic (C compilers leave them undefined).
    data = np.zeros(len(records) * file_dtype.itemsize, dtype=np.uint8)
    out = data.view(file_dtype)
    if layout == "LP64":
        out[:] = records  # field by field (not the padding), byte-swapping if needed, in C
    else:
        for name in FIELDS:
            if name != "tstop":
                out[name] = records[name]
        tstop = np.asarray(records["tstop"], dtype=np.uint64)
        out["tstop"] = np.where(tstop == OPEN_ENDED, OPEN_ENDED_32, tstop)
    for name in ("sigma", "clipsigma"):
        # One NaN for all: the journal keeps a NaN as null, which replays as numpy's; a
        # foreign tool's NaN (C's 0.0/0.0 on x86 has the sign bit set) kept as it came
        # would make every later state of the file one no replay can reproduce.
        values = out[name]
        values[np.isnan(values)] = np.nan
    return data.tobytes()


def check_writable(records: np.ndarray, layout: str) -> None:
    """Refuse records no file may hold: bad type, long filename, times beyond an ILP32 long."""
    bad_type = ~np.isin(records["type"], np.array(list(TYPE_NAMES), dtype=np.int32))
    if bad_type.any():
        i = int(np.flatnonzero(bad_type)[0])
        raise ValueError(f"record {i}: unknown type code {int(records['type'][i])}")
    too_long = np.strings.str_len(records["filename"]) > MAX_FILENAME_BYTES
    if too_long.any():
        i = int(np.flatnonzero(too_long)[0])
        raise ValueError(f"record {i}: filename longer than {MAX_FILENAME_BYTES} bytes")
    if layout == "ILP32" and len(records):
        # 2**32 - 1 in tstop means open-ended, so a finite tstop must stay below it
        for name, limit in (
            ("tstart", OPEN_ENDED_32),
            ("treg", OPEN_ENDED_32),
            ("tstop", OPEN_ENDED_32 - 1),
        ):
            values = np.asarray(records[name], dtype=np.uint64)
            too_big = values > limit
            if name == "tstop":
                too_big &= values != OPEN_ENDED
            if too_big.any():
                i = int(np.flatnonzero(too_big)[0])
                raise ValueError(
                    f"record {i}: {name} = {int(values[i])} does not fit the "
                    "32-bit unsigned long of an ILP32 file"
                )


def make_records(rows: list[dict]) -> np.ndarray:
    """Build an in-memory records array from dicts, for writers and tests.

    ``type`` may be a code or a name ('flat'); ``filename`` may be bytes or str (decoded with
    ``surrogateescape``, as :class:`DetRegRecord` decodes it); a missing or
    None ``tstop`` is open-ended, a missing ``filter`` is -1 (any); other missing fields are 0.
    """
    records = np.zeros(len(rows), dtype=RECORD_DTYPE)
    columns: dict[str, list] = {name: [] for name in FIELDS}
    for row in rows:
        unknown = set(row) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown record field(s): {sorted(unknown)}")
        for name in FIELDS:
            value = row.get(name)
            if name == "type" and isinstance(value, str):
                if value not in TYPE_CODES:
                    raise ValueError(f"unknown detrend type {value!r}")
                value = TYPE_CODES[value]
            elif name == "filename":
                value = b"" if value is None else value
                if isinstance(value, str):  # bytes that are not UTF-8 come back as they were
                    value = value.encode("utf-8", "surrogateescape")
                if not isinstance(value, (bytes, bytearray)):  # bytes(n) would be n NULs
                    raise ValueError(f"filename is {type(value).__name__}, not text")
                value = bytes(value)
                if len(value) > MAX_FILENAME_BYTES:
                    raise ValueError(
                        f"filename longer than {MAX_FILENAME_BYTES} bytes: {value[:40]!r}…"
                    )
            elif name == "tstop" and value is None:
                value = OPEN_ENDED
            elif name == "filter" and value is None:
                value = ANY_FILTER
            columns[name].append(0 if value is None else value)
    if rows:
        for name in FIELDS:
            records[name] = np.array(columns[name], dtype=RECORD_DTYPE.fields[name][0])
    return records


def records_from_json(rows: list[dict]) -> np.ndarray:
    """The records of their JSON form (:meth:`DetRegRecord.to_json`, what the journal holds):
    unknown sigma (None) is NaN; ``filter_name`` is the header's, not the record's.
    ValueError names a missing field."""
    fields = []
    for row in rows:
        try:
            record = {name: row[name] for name in FIELDS}
        except (KeyError, TypeError):
            missing = [n for n in FIELDS if not isinstance(row, dict) or n not in row]
            raise ValueError(f"a record lacks the field(s) {', '.join(missing)}") from None
        for name in ("sigma", "clipsigma"):
            record[name] = float("nan") if record[name] is None else record[name]
        fields.append(record)
    return make_records(fields)
