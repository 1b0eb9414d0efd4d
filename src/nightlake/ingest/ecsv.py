"""ECSV 1.0 → Arrow: the header as astropy reads it (libyaml), the body through pyarrow's CSV.

astropy's ``Table.read(format="ascii.ecsv")`` is the reference for what a file means; this
module hands the body to pyarrow's multi-threaded CSV parser, with column types taken from
the header, because astropy parses it row by row in Python (bench/convert.py measures both).
The result equals astropy's reading cell for cell:

- every ECSV datatype (bool, int8…uint64, float16…float64, string); an empty field is null
  (astropy: masked);
- ``subtype: json`` stays JSON text, typed ``arrow.json`` so DuckDB sees a JSON column;
- ``subtype: float64[3,2]`` (fixed shape) and ``float64[null]`` (variable length) become
  Arrow lists;
- astropy Time mixins (``__serialized_columns__``) become ``timestamp[us]`` in UTC, their
  format, scale and precision kept in the field metadata (``astropy_time``), masked ones too;
- masked columns written as data and mask (``serialize_method="data_mask"``) become one
  column, their masked values null;
- kbmod "packed" tables (``is_packed``/``shared_cols``) are unpacked into columns;
- comment lines (``#`` after blanks) and blank lines are skipped, blanks at a line's ends
  stripped, lines split and each value stripped of blanks and tabs, as astropy reads them;
- column unit, description, format, meta and the ECSV datatype go into the Arrow field
  metadata, the table meta and the header text into the schema metadata.

Bad input raises :class:`nightlake.errors.FormatError` naming the file, and the line and
column where they are known.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from nightlake.errors import FormatError, InputError

ECSV_TYPES: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "float16": pa.float16(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "string": pa.string(),
}
# float16 has no CSV parser of its own: parse as float64, then cast, as numpy (astropy) reads
# it (through float32, text between two float16 values could round twice: 2049.0000001)
_PARSE_AS = {"float16": pa.float64()}
#: an array subtype: ``float64[3,2]`` (fixed shape), ``int64[null]`` (variable length)
ARRAY_SUBTYPE = re.compile(r"^(?P<base>[a-z0-9]+)\[(?P<shape>[0-9null, ]+)\]$")
_TIME_CLASS = "astropy.time.core.Time"
# astropy treats a body line whose first non-blank character is '#' as a comment (a '#'
# anywhere else is data: DEEP's collection names contain one), skips blank lines, strips
# each line's ends, and splits lines with Python's csv, blanks after a delimiter skipped and
# each value stripped of blanks and tabs (:func:`_plain_lines`, :func:`_stripped`,
# :func:`_as_astropy_splits`).


@dataclass(frozen=True)
class ColumnSpec:
    """One column of the ECSV header."""

    name: str
    datatype: str
    subtype: str | None = None
    unit: str | None = None
    description: str | None = None
    format: str | None = None
    meta: dict[str, Any] | None = None

    def field_metadata(self) -> dict[str, str]:
        md = {"ecsv_datatype": self.datatype}
        for key in ("subtype", "unit", "description", "format"):
            value = getattr(self, key)
            if value is not None:
                md[key] = str(value)
        if self.meta:
            md["meta"] = json.dumps(self.meta, default=str)
        return md


@dataclass
class EcsvTable:
    """A file read into Arrow, with what the header said about it."""

    path: Path
    table: pa.Table
    header_text: str
    table_meta: dict[str, Any]
    size: int
    mtime_ns: int
    sha256: str
    unpacked: list[str] = field(default_factory=list)

    @property
    def fingerprint(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class EcsvHeader:
    """The parsed YAML header and where the body starts."""

    text: str
    column_set: _ColumnSet
    meta: dict[str, Any]
    delimiter: str
    names_line: int  # 1-based line number of the column-names line
    body_offset: int  # byte offset of the first data line

    @property
    def columns(self) -> tuple[ColumnSpec, ...]:
        return self.column_set.columns


class _ColumnSet:
    """What the body reader derives from a header's columns."""

    def __init__(self, columns: tuple[ColumnSpec, ...]) -> None:
        self.columns = columns
        self.names = [c.name for c in columns]
        #: the type pyarrow's CSV reader parses each column as
        self.parse_types: dict[str, pa.DataType] = {}
        for col in columns:
            if col.subtype and (col.subtype == "json" or ARRAY_SUBTYPE.match(col.subtype)):
                self.parse_types[col.name] = pa.string()
            else:
                self.parse_types[col.name] = _PARSE_AS.get(col.datatype, ECSV_TYPES[col.datatype])
        self.field_metadata = [col.field_metadata() for col in columns]
        #: the finished schema when every column leaves the CSV reader as it stays (no
        #: float16, JSON or array columns), else None
        self.plain_schema = None
        if not any(col.subtype or col.datatype == "float16" for col in columns):
            self.plain_schema = pa.schema(
                [
                    pa.field(col.name, self.parse_types[col.name], metadata=md)
                    for col, md in zip(columns, self.field_metadata)
                ]
            )


def _column_specs(datatype: list) -> tuple[ColumnSpec, ...]:
    columns = []
    for entry in datatype or []:
        if not isinstance(entry, dict) or "name" not in entry:
            raise FormatError(None, f"ECSV header: column entry without a name: {entry!r}")
        kind = str(entry.get("datatype", "string"))
        if kind not in ECSV_TYPES:
            raise FormatError(
                None,
                f"unknown datatype {kind!r} (expected one of {', '.join(ECSV_TYPES)})",
                column=str(entry["name"]),
            )
        columns.append(
            ColumnSpec(
                name=str(entry["name"]),
                datatype=kind,
                subtype=entry.get("subtype"),
                unit=None if entry.get("unit") is None else str(entry["unit"]),
                description=entry.get("description"),
                format=entry.get("format"),
                meta=entry.get("meta"),
            )
        )
    seen: set[str] = set()
    for col in columns:
        if col.name in seen:
            raise FormatError(None, f"duplicate column name {col.name!r} in the ECSV header")
        seen.add(col.name)
    return tuple(columns)


def read_ecsv(path: str | os.PathLike[str]) -> EcsvTable:
    """Read one ECSV file (losslessly) into Arrow.

    A big file (joined.collection) is parsed by pyarrow from the file itself while a second
    thread hashes and scans the same file (:func:`_read_streamed`); any other file, or a big
    one whose lines are not plain (:func:`_plain_lines`) or that fails to parse, is read into
    memory first, where errors are located (:func:`_read_in_memory`).
    """
    path = Path(path)
    try:
        # non-blocking, so a FIFO is seen by its fstat and refused instead of waited on
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise InputError(path, not_a_regular_file(path) or f"cannot read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        problem = not_a_regular_file(path, st)
        if problem:
            raise InputError(path, problem)
        read = _read_streamed(path, fd, st) if st.st_size > PARALLEL_BYTES else None
        if read is None:
            os.lseek(fd, 0, os.SEEK_SET)  # where /dev/fd shares it (BSDs), the parse moved it
            with os.fdopen(fd, "rb", closefd=False) as handle:
                data = handle.read()
            _check_unchanged(path, fd, st, len(data))
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    header, table, sha256 = read or _read_in_memory(path, data)
    table, unpacked = _unpack_kbmod(path, table, header)
    table = _apply_masks(path, table, header)
    table = _decode_time_mixins(path, table, header)
    consumed = {
        "__serialized_columns__",
        *(("is_packed", "shared_cols", *unpacked) if unpacked else ()),
    }
    return EcsvTable(
        path=path.resolve(),
        table=table,
        header_text=header.text,
        table_meta={k: v for k, v in header.meta.items() if k not in consumed},
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        sha256=sha256,
        unpacked=unpacked,
    )


def _check_unchanged(path: Path, fd: int, before: os.stat_result, read: int) -> None:
    """Refuse a file written to while it was read: its bytes, hash and stamps would not be
    of one file."""
    after = os.fstat(fd)
    if read != before.st_size or (after.st_size, after.st_mtime_ns) != (
        before.st_size,
        before.st_mtime_ns,
    ):
        raise InputError(path, "changed while it was read; convert it again")


def _read_in_memory(path: Path, data: bytes) -> tuple[EcsvHeader, pa.Table, str]:
    """The header, table and SHA-256 of a file's bytes."""
    header = parse_header(path, data)
    if len(data) - header.body_offset > PARALLEL_BYTES:
        # A big file: hash it on a second thread while it is parsed (hashlib releases the
        # GIL; so does pyarrow's parser).
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="nightlake-sha256") as pool:
            digest = pool.submit(lambda: hashlib.sha256(data).hexdigest())
            table = _read_body(path, data, header)
            return header, table, digest.result()
    return header, _read_body(path, data, header), hashlib.sha256(data).hexdigest()


def _read_streamed(
    path: Path, fd: int, st: os.stat_result
) -> tuple[EcsvHeader, pa.Table, str] | None:
    """A plain big file read as pyarrow reads a CSV file, in blocks into buffers it reuses:
    no copy of the whole file into fresh memory (a 218 MB read cost 0.17 s of page faults),
    and no scan of it before the parse starts. Beside the parse, a thread reads the same
    file (the same inode, through ``/dev/fd``) to hash it and to check that its lines are
    plain (:func:`_plain_lines`); ``None`` when they are not, or the parse fails: the
    in-memory read decides what those lines mean and where an error is."""
    from concurrent.futures import ThreadPoolExecutor

    head = os.pread(fd, HEAD_BYTES, 0)
    names_start = _HEADER_LINES.match(head).end()
    names_end = head.find(b"\n", names_start)
    if names_end < 0:  # a header longer than HEAD_BYTES: rare enough to read whole
        return None
    header = parse_header(path, head[: names_end + 1])
    if not header.column_set.names:
        return None
    with ThreadPoolExecutor(1, thread_name_prefix="nightlake-sha256") as pool:
        scan = pool.submit(_digest_and_scan, fd, header.body_offset)
        try:
            with pa.OSFile(f"/dev/fd/{fd}") as source:
                source.seek(header.body_offset)
                table = _parse_body(source, header, False, BLOCK_BYTES)
        except (pa.ArrowException, OSError):  # the in-memory read says what is wrong
            table = None
        sha256, read, plain = scan.result()
    _check_unchanged(path, fd, st, read)
    if table is None or not plain:
        return None
    table = _stripped(table, header.delimiter)
    if table is None:
        return None
    try:
        return header, _finish_columns(path, table, header), sha256
    except _RowError:  # the in-memory read names its line
        return None


def _digest_and_scan(fd: int, body_offset: int) -> tuple[str, int, bool]:
    """The SHA-256 of the file's bytes, how many there were, and whether its body's lines
    are plain (:func:`_plain_lines`), read in chunks into one buffer with ``pread``: the
    parse reads the same file at its own offset."""
    digest = hashlib.sha256()
    buffer = bytearray(2 + SCAN_BYTES)  # the two bytes before each chunk, then the chunk
    buffer[:2] = b"\n\n"
    view = memoryview(buffer)
    offset, plain, last = 0, True, 10
    while n := os.preadv(fd, [view[2:]], offset):
        digest.update(view[2 : 2 + n])
        if plain:
            chunk = np.frombuffer(buffer, np.uint8, 2 + n)
            plain = _plain_lines(chunk, max(2, body_offset - offset + 2))
            buffer[:2], last = buffer[n : n + 2], buffer[n + 1]
        offset += n
    return digest.hexdigest(), offset, plain and last not in _BLANKS


def _plain_lines(chunk: np.ndarray, skip: int) -> bool:
    """Whether no line of ``chunk[2:]`` from index ``skip`` starts with '#', a blank or a
    tab, or ends with a blank or a tab (before its ``\n`` or ``\r\n``); ``chunk[:2]`` are
    the two bytes before it (``\n\n`` at the start of a body).

    astropy skips comment and blank lines and strips each line's ends: a body with none of
    those reads the same through pyarrow's parser as it is, once its values are stripped as
    astropy strips them (:func:`_stripped`). (A line that ends the body without a newline
    is the caller's to check.)
    """
    newlines = np.flatnonzero(chunk[1:] == 10) + 1
    starts = newlines + 1
    starts = starts[(starts >= skip) & (starts < len(chunk))]
    ends = newlines[newlines >= skip]
    before = chunk[ends - 1]
    before = np.where(before == 13, chunk[ends - 2], before)  # \r\n: the byte before both
    return not (np.isin(chunk[starts], _NOT_PLAIN_FIRST).any() or np.isin(before, _BLANKS).any())


#: the bytes a plain body line neither starts nor ends with (:func:`_plain_lines`)
_NOT_PLAIN_FIRST = np.frombuffer(b"# \t", np.uint8)
_BLANKS = np.frombuffer(b" \t", np.uint8)


def not_a_regular_file(path: Path, st: os.stat_result | None = None) -> str | None:
    """Why ``path`` cannot be read as an input file, or ``None`` (a stat; never an open,
    which would wait forever on a FIFO)."""
    if st is None:
        try:
            st = os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "symlink loop (too many levels of symbolic links)"
            if exc.errno == errno.ENOENT and path.is_symlink():
                return f"broken symlink (to {os.readlink(path)}, which does not exist)"
            return f"cannot read: {exc.strerror}"
    if stat.S_ISREG(st.st_mode):
        return None
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not an ECSV file"
    kind = (
        "a FIFO"
        if stat.S_ISFIFO(st.st_mode)
        else "a socket"
        if stat.S_ISSOCK(st.st_mode)
        else "a device"
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
        else "not a regular file"
    )
    return f"is {kind}, not a regular file" if kind.startswith("a ") else kind


# -- header -----------------------------------------------------------------------------------
def parse_header(path: Path, data: bytes) -> EcsvHeader:
    """Split off and parse the ``# …`` YAML header; validate what the body reader relies on."""
    if re.search(rb"\S", data) is None:
        raise FormatError(path, "empty file (expected an ECSV header starting with '# %ECSV 1.0')")
    names_start = _HEADER_LINES.match(data).end()
    names_end = data.find(b"\n", names_start)
    names_end = len(data) if names_end < 0 else names_end + 1
    try:
        return _parse_head(data[:names_end], names_start)
    except FormatError as exc:  # raised without the path: add it
        raise FormatError(path, exc.cause, line=exc.line, column=exc.column) from None


# '#' lines and blank lines: the header, up to the column-names line
_HEADER_LINES = re.compile(rb"(?:#[^\n]*\n|[^\S\n]*\n)*")


def _parse_head(head: bytes, names_start: int) -> EcsvHeader:
    """The header of a file starting with ``head`` (up to and with the column-names line,
    which starts at ``names_start``); errors name no file (the caller adds it)."""
    first_nl = head.find(b"\n")
    first = head[: first_nl if first_nl >= 0 else len(head)].decode("utf-8", "replace").strip()
    if not re.match(r"^# %ECSV \d+\.\d+$", first):
        raise FormatError(
            None, f"not an ECSV file: first line is {first[:40]!r}, expected '# %ECSV 1.0'", line=1
        )
    try:  # astropy reads the header as UTF-8; a stray byte must not become U+FFFD
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(
            None,
            f"not UTF-8 text (byte 0x{head[exc.start]:02x})",
            line=head.count(b"\n", 0, exc.start) + 1,
        ) from None
    names_text = head[names_start:].decode("utf-8").rstrip("\r\n")
    if names_text.startswith("#") or not names_text.strip():
        raise FormatError(
            None, "header without a column-names line (no data follows the '#' lines)"
        )
    names_line = (head.count(b"\n", 0, names_start) + 1, names_text)
    lines = [
        line.rstrip("\r")
        for line in head[:names_start].decode("utf-8").split("\n")
        if line.startswith("#")
    ]
    header_lines = [ln[2:] if ln.startswith("# ") else ln[1:] for ln in lines[1:]]
    if header_lines and header_lines[0].strip() == "---":
        header_lines = header_lines[1:]
    try:
        header = load_header_yaml(header_lines)
    except Exception as exc:  # yaml raises a zoo of types for broken input
        cause = " ".join(str(exc.__cause__ or exc).split())
        raise FormatError(None, f"bad YAML in the ECSV header: {cause}") from None
    if not isinstance(header, dict) or "datatype" not in header:
        raise FormatError(None, "ECSV header has no 'datatype' list")
    column_set = _ColumnSet(_column_specs(header["datatype"]))
    names = column_set.names
    delimiter = header.get("delimiter", " ")
    if delimiter not in (" ", ","):
        raise FormatError(None, f"delimiter must be ' ' or ',', not {delimiter!r}")
    found = list(_split_names(names_line[1], delimiter))
    if found != names:
        raise FormatError(
            None,
            f"column names line {found[:6]}… does not match the header's {names[:6]}…",
            line=names_line[0],
        )
    meta = header.get("meta") or {}
    return EcsvHeader(
        text="\n".join(lines),
        column_set=column_set,
        meta=dict(meta),
        delimiter=delimiter,
        names_line=names_line[0],
        body_offset=len(head),
    )


def load_header_yaml(lines: list[str]) -> Any:
    """The header YAML as astropy reads it, parsed with libyaml when PyYAML has it.

    astropy's own loader is pure Python, most of the time of reading a small file; this loader
    uses libyaml's parser with astropy's tag constructors (``!astropy.table.SerializedColumn``,
    units, …) and reads ``!!omap`` as an ordered dict.
    """
    import textwrap

    import yaml

    text = textwrap.dedent("\n".join(lines))
    astropy_tags = _ASTROPY_TAG.search(text) is not None
    loader = _header_loader(astropy_tags)
    if loader is None:
        from astropy.table.meta import get_header_from_yaml

        return get_header_from_yaml(lines)
    blocks = _top_level_blocks(text)
    if blocks is None:
        return yaml.load(text, Loader=loader)
    header: dict[str, Any] = {}
    for block in blocks:
        header.update(_load_block(block, astropy_tags))
    return header


# A tag other than !!omap (``!astropy.table.SerializedColumn``, ``!!python/tuple``, …) needs
# astropy's constructors, whose import costs half a second; plain headers do without.
# A YAML tag starts a node (after a blank, '[', '{' or ','); '!!omap' is read by the plain
# loader, an exclamation mark inside a value is no tag.
_ASTROPY_TAG = re.compile(r"(?<![^\s\[{,])!(?!!omap\b)")  # starts with '!': a fast scan


_TOP_KEY = re.compile(r"^[A-Za-z_][\w-]*:(?:\s|$)")


def _top_level_blocks(text: str) -> list[str] | None:
    """The header split at its top-level keys (``datatype:``, ``meta:``, ``schema:``, …).

    Files of one survey share their column block word for word, and building Python objects
    from YAML is most of a header's parse: each block is parsed once per process
    (:func:`_load_block`). ``None`` when the text is not a plain mapping of keys, or uses
    anchors that could tie blocks together: parse it whole.
    """
    if "&" in text and re.search(r"(^|\s)[&*][\w-]", text):
        return None
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if _TOP_KEY.match(line):
            blocks.append([line])
        elif blocks:
            blocks[-1].append(line)
        elif line.strip() and not line.lstrip().startswith("#"):
            return None
    return ["\n".join(b) for b in blocks] if blocks else None


@lru_cache(maxsize=256)
def _load_block_cached(block: str, astropy_tags: bool) -> Any:
    import yaml

    return yaml.load(block, Loader=_header_loader(astropy_tags))


def _load_block(block: str, astropy_tags: bool) -> dict[str, Any]:
    value = _load_block_cached(block, astropy_tags)
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping in the ECSV header, found {block[:40]!r}")
    return dict(value)  # header values are read, never modified


def _header_loader(astropy_tags: bool = True):
    """libyaml's parser reading ``!!omap`` as an ordered dict, plus astropy's tag
    constructors when the header has such tags; ``None`` when PyYAML lacks libyaml."""
    import yaml

    if not getattr(yaml, "__with_libyaml__", False):
        return None

    class HeaderLoader(yaml.CSafeLoader):
        """libyaml parser (+ astropy's constructors)."""

    if astropy_tags:
        from astropy.io.misc.yaml import AstropyLoader

        for tag, constructor in AstropyLoader.yaml_constructors.items():
            HeaderLoader.add_constructor(tag, constructor)
        for tag, constructor in AstropyLoader.yaml_multi_constructors.items():
            HeaderLoader.add_multi_constructor(tag, constructor)
    HeaderLoader.add_constructor("tag:yaml.org,2002:omap", _construct_omap)
    return HeaderLoader


def _construct_omap(loader, node):
    """``!!omap`` (a list of one-key mappings) → dict, keeping the order."""
    import yaml

    if not isinstance(node, yaml.SequenceNode):
        raise yaml.constructor.ConstructorError(
            None, None, "!!omap must be a sequence", node.start_mark
        )
    result: dict[Any, Any] = {}
    for item in node.value:
        if not isinstance(item, yaml.MappingNode) or len(item.value) != 1:
            raise yaml.constructor.ConstructorError(
                None, None, "!!omap entries must be one-key mappings", item.start_mark
            )
        key_node, value_node = item.value[0]
        result[loader.construct_object(key_node, deep=True)] = loader.construct_object(
            value_node, deep=True
        )
    return result


def _split_names(line: str, delimiter: str) -> tuple[str, ...]:
    import csv

    # as astropy splits it: the line stripped, its names not
    row = next(csv.reader([line.strip()], **_astropy_dialect(delimiter)))
    return tuple(name for name in row if name != "") if delimiter == " " else tuple(row)


# -- body -------------------------------------------------------------------------------------
#: bodies larger than this parse on every core (smaller ones run side by side on convert's
#: threads) and are hashed while they parse; files larger than this are parsed from the
#: file itself (:func:`_read_streamed`)
PARALLEL_BYTES = 32 << 20
#: pyarrow's CSV block; a line longer than a block cannot be parsed on several threads, so a
#: body that has one is read again with a block sized from its longest line
BLOCK_BYTES = 1 << 24
#: the largest block pyarrow accepts (an int32), and so the longest line it can read
MAX_BLOCK_BYTES = (1 << 31) - 1
#: a big file's first read, for its header (a longer header reads the file into memory)
HEAD_BYTES = 1 << 20
#: a big file is hashed and scanned in chunks of this size, read into one buffer
SCAN_BYTES = 1 << 22


def _read_body(path: Path, data: bytes, header: EcsvHeader) -> pa.Table:
    names = header.column_set.names
    column_types = header.column_set.parse_types
    body = memoryview(data)[header.body_offset :]
    plain = _plain_body(data, header.body_offset)
    if not plain:  # rare: lines as astropy splits them
        body = _as_astropy_splits(body, header.delimiter)
        if body is None:
            raise _locate_body_error(path, data, header, column_types, None)
    if not names:
        return pa.table({})
    if re.search(rb"\S", body) is None:  # a valid file with no rows
        return _finished(
            path, data, pa.table({n: pa.array([], column_types[n]) for n in names}), header
        )
    ascii_only = data.isascii()
    try:
        table = _parse_sized(path, body, header, ascii_only, not plain)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        if plain:  # several blanks between values (a hand-aligned file): as astropy splits
            return _read_body_split(path, data, header, ascii_only)  # them, or located there
        raise _locate_body_error(path, data, header, column_types, exc) from None
    if plain:
        table = _stripped(table, header.delimiter)
        if table is None:
            return _read_body_split(path, data, header, ascii_only)
    return _finished(path, data, table, header)


def _read_body_split(path: Path, data: bytes, header: EcsvHeader, ascii_only: bool) -> pa.Table:
    """A plain body that pyarrow's parse of it as it is got wrong (it failed, or a value
    was quoted after blanks, :func:`_stripped`), parsed again as astropy splits its lines."""
    body = _as_astropy_splits(memoryview(data)[header.body_offset :], header.delimiter)
    try:
        if body is None:
            raise pa.ArrowInvalid("not UTF-8")
        table = _parse_sized(path, body, header, ascii_only, True)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise _locate_body_error(path, data, header, header.column_set.parse_types, exc) from None
    return _finished(path, data, table, header)


def _blank_ended(table: pa.Table) -> list[str]:
    """The text columns with a value that starts or ends with a blank or a tab. Only a
    quoted value can (unquoted ones end at blanks), or one beside a tab or, with commas, a
    blank. Four tests of each text column's value ends: no scan of the bytes."""
    import pyarrow.compute as pc

    return [
        name
        for name, column in zip(table.column_names, table.itercolumns())
        if pa.types.is_string(column.type)
        and any(
            pc.any(edge(column, blank)).as_py()
            for edge in (pc.starts_with, pc.ends_with)
            for blank in (" ", "\t")
        )
    ]


def _stripped(table: pa.Table, delimiter: str) -> pa.Table | None:
    """A plain body's table with its text values as astropy reads them: stripped of blanks
    and tabs at their ends (:func:`_blank_ended`), a value left empty missing. ``None``
    when, with commas, a value is blanks and then a quote: astropy skips the blanks and reads
    the quoted text, which only the split of its lines gives (:func:`_as_astropy_splits`)."""
    import pyarrow.compute as pc

    for name in _blank_ended(table):
        at = table.schema.get_field_index(name)
        column = table.column(at)
        if delimiter == "," and pc.any(pc.match_substring_regex(column, '^[ \t]+"')).as_py():
            return None
        column = pc.utf8_trim(column, " \t")
        column = pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)
        table = table.set_column(at, table.schema.field(at), column)
    return table


def _astropy_dialect(delimiter: str) -> dict[str, Any]:
    """The csv dialect astropy's ECSV reader splits body lines with (``DefaultSplitter``);
    it then strips each value of blanks and tabs."""
    return {
        "delimiter": delimiter,
        "quotechar": '"',
        "doublequote": True,
        "skipinitialspace": True,
    }


def _as_astropy_splits(body, delimiter: str) -> bytes | None:
    """The body's rows as astropy reads them, written again for pyarrow's parser: comment
    and blank lines dropped, each line stripped, split by csv with blanks after a delimiter
    skipped, each value stripped of blanks and tabs, then written as csv (values quoted where
    they must be; an empty one reads as missing, as in astropy).
    ``None`` if the body is not UTF-8. Python-speed: only for bodies that are not plain, or
    that fail pyarrow's parse."""
    import csv
    import io

    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        return None
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, quotechar='"', lineterminator="\n")
    writer.writerows(row for _, row in _rows(text, delimiter))
    return out.getvalue().encode()


def _parse_sized(path: Path, body, header: EcsvHeader, ascii_only: bool, newlines: bool):
    """:func:`_parse_body` in blocks of :data:`BLOCK_BYTES`, or, where a row straddles
    blocks (a huge ``wcs``, a quoted value over many lines), of its longest line's length,
    doubled while a row still does: measured only then, so the usual file pays nothing."""
    block = BLOCK_BYTES
    while True:
        try:
            return _parse_body(body, header, ascii_only, block, newlines)
        except pa.ArrowInvalid as exc:
            if "straddl" not in str(exc) or block >= MAX_BLOCK_BYTES:
                raise
        longest = _longest_line(body)
        if longest >= MAX_BLOCK_BYTES:
            raise FormatError(
                path,
                f"a line of {longest} bytes is longer than pyarrow can read "
                f"({MAX_BLOCK_BYTES} bytes)",
            )
        block = min(MAX_BLOCK_BYTES, max(2 * block, longest + 1))


def _longest_line(body) -> int:
    """The length of the longest line of ``body``, with its newline."""
    ends = np.flatnonzero(np.frombuffer(body, np.uint8) == 10)
    bounds = np.concatenate([[-1], ends, [len(body) - 1]])
    return int(np.diff(bounds).max())


def _parse_body(
    body, header: EcsvHeader, ascii_only: bool, block_size: int, newlines: bool = False
) -> pa.Table:
    """``body`` (a buffer, or a file at the body's start) parsed with the header's types;
    ``ascii_only``: it is known to be ASCII, valid UTF-8 (one vectorised test of the
    whole body replaces pyarrow's check of every string value); ``newlines``: quoted values
    may hold newlines (blocks are then cut where no quote is open)."""
    size = len(body) if not isinstance(body, pa.NativeFile) else body.size() - body.tell()
    return pacsv.read_csv(
        body if isinstance(body, pa.NativeFile) else pa.BufferReader(body),
        read_options=pacsv.ReadOptions(
            column_names=header.column_set.names,
            block_size=block_size,
            use_threads=size > PARALLEL_BYTES,
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=header.delimiter,
            quote_char='"',
            double_quote=True,
            escape_char=False,
            ignore_empty_lines=True,
            newlines_in_values=newlines,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=header.column_set.parse_types,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            true_values=["True", "true", "1"],
            false_values=["False", "false", "0"],
            check_utf8=not ascii_only,
        ),
    )


def _plain_body(data: bytes, start: int, chunk: int = 1 << 22) -> bool:
    """Whether the body (``data`` from ``start``) has no comment line, no blank line and no
    line starting or ending with a blank (:func:`_plain_lines`), which astropy would skip or
    strip.

    numpy finds the lines without holding the GIL (a regex holds it for the whole body,
    stalling the other reader threads), ``chunk`` bytes at a time: a mask of the whole body
    would be fresh memory, each page zeroed by the kernel, which costs more than the test.
    """
    body = np.frombuffer(data, np.uint8)
    for lo in range(start, len(data), chunk):
        if lo - 2 < start:  # nothing before the body: as if after an empty line
            pad = np.frombuffer(b"\n\n"[: start - lo + 2], np.uint8)
            part = np.concatenate([pad, body[start : lo + chunk]])
        else:
            part = body[lo - 2 : lo + chunk]
        if not _plain_lines(part, 2):
            return False
    return len(data) <= start or data[-1] not in b" \t"


def _finish_columns(path: Path, table: pa.Table, header: EcsvHeader) -> pa.Table:
    """Types pyarrow's CSV reader cannot produce directly, and the field metadata."""
    if header.column_set.plain_schema is not None:  # from_batches: no per-column validation
        return pa.Table.from_batches(table.to_batches(), schema=header.column_set.plain_schema)
    arrays = []
    fields = []
    for col, md in zip(header.columns, header.column_set.field_metadata):
        arr = table.column(col.name)
        if col.datatype == "float16" and not col.subtype:
            arr = arr.cast(pa.float16())
        if col.subtype == "json":
            arr = _json_column(path, arr, col, header)
        elif col.subtype and ARRAY_SUBTYPE.match(col.subtype):
            arr = _array_column(path, arr, col)
        arrays.append(arr)
        fields.append(pa.field(col.name, arr.type, metadata=md))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _rows(text: str, delimiter: str, first: int = 1) -> Iterator[tuple[int, list[str]]]:
    """Each row of a body's ``text`` as astropy reads it (comment and blank lines dropped,
    each line stripped and given its newline, so a quoted value may span lines; split by
    csv in its dialect; each value stripped of blanks and tabs), with the line it starts on
    (``first``: the body's first line's number). Python speed."""
    import csv

    # a field of any length pyarrow holds (the default limit, 128 kB, is below a big wcs)
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))
    kept = [  # lines numbered by '\n'; astropy also breaks them at '\r', U+2028, …
        (first + i, stripped)
        for i, physical in enumerate(text.split("\n"))
        for line in physical.splitlines()
        if (stripped := line.strip()) and not stripped.startswith("#")
    ]
    reader = csv.reader((line + "\n" for _, line in kept), **_astropy_dialect(delimiter))
    taken = 0  # lines the reader has taken: a row starts at the next (a value spans lines)
    for row in reader:
        lineno, taken = kept[taken][0], reader.line_num
        yield lineno, [value.strip(" \t") for value in row]


def _body_rows(data: bytes, header: EcsvHeader) -> Iterator[tuple[int, list[str]]]:
    """:func:`_rows` of a file's body, numbered as the file's lines (for errors)."""
    text = data[header.body_offset :].decode("utf-8", "replace")
    return _rows(text, header.delimiter, header.names_line + 1)


class _RowError(Exception):
    """A bad value found once the body is parsed (a JSON or array column): its row among
    the body's rows; the read that has the file's bytes names its line (:func:`_finished`)."""

    def __init__(self, row: int, message: str, column: str) -> None:
        super().__init__(message)
        self.row, self.message, self.column = row, message, column


def _finished(path: Path, data: bytes, table: pa.Table, header: EcsvHeader) -> pa.Table:
    """:func:`_finish_columns`, a bad value's error naming its line."""
    try:
        return _finish_columns(path, table, header)
    except _RowError as err:
        line = next(itertools.islice(_body_rows(data, header), err.row, None), (None,))[0]
        raise FormatError(path, err.message, line=line, column=err.column) from None


def _locate_body_error(path, data, header, column_types, exc) -> FormatError:
    """Find the first bad line and column with a slow exact scan (only after a failure)."""
    try:
        data[header.body_offset :].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = header.body_offset + exc.start
        return FormatError(
            path, f"not UTF-8 text (byte 0x{data[at]:02x})", line=data.count(b"\n", 0, at) + 1
        )
    names = [c.name for c in header.columns]
    for lineno, row in _body_rows(data, header):
        if len(row) != len(names):
            return FormatError(path, f"expected {len(names)} fields, found {len(row)}", line=lineno)
        for name, value in zip(names, row):
            if value == "":
                continue
            if not _parses_as(value, column_types[name]):
                col = next(c for c in header.columns if c.name == name)
                return FormatError(
                    path,
                    f"value {value[:40]!r} is not a valid {col.datatype}",
                    line=lineno,
                    column=name,
                )
    cause = " ".join(str(exc).split()) if exc is not None else "its lines do not split"
    return FormatError(path, f"cannot parse the table body: {cause}")


def _parses_as(value: str, typ: pa.DataType) -> bool:
    if pa.types.is_boolean(typ):  # as the parse reads them (a cast takes more: "TRUE")
        return value in ("True", "true", "1", "False", "false", "0")
    try:
        pa.array([value], pa.string()).cast(typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _json_column(path: Path, arr: pa.ChunkedArray, col: ColumnSpec, header) -> pa.ChunkedArray:
    """JSON text stays text (typed arrow.json); JSON ``null`` is a missing value as in astropy."""
    import pyarrow.compute as pc

    arr = pc.if_else(pc.equal(arr, "null"), pa.scalar(None, pa.string()), arr)
    for i, value in enumerate(arr.to_pylist()):
        if value is None:
            continue
        try:
            json.loads(value)
        except ValueError:
            raise _RowError(i, f"value {value[:40]!r} is not valid JSON", col.name) from None
    json_type = pa.json_() if hasattr(pa, "json_") else pa.string()
    return arr.cast(json_type) if json_type != pa.string() else arr


def _array_column(path: Path, arr: pa.ChunkedArray, col: ColumnSpec) -> pa.ChunkedArray:
    """``float64[3,2]`` → nested fixed-size lists; ``float64[null]`` → variable-length list."""
    match = ARRAY_SUBTYPE.match(col.subtype or "")
    assert match is not None
    base = match["base"]
    if base not in ECSV_TYPES:
        raise FormatError(
            path, f"unknown element datatype {base!r} in subtype {col.subtype!r}", column=col.name
        )
    dims = [d.strip() for d in match["shape"].split(",")]
    typ: pa.DataType = ECSV_TYPES[base]
    for dim in reversed(dims):
        typ = pa.list_(typ) if dim == "null" else pa.list_(typ, int(dim))
    values = []
    for i, value in enumerate(arr.to_pylist()):
        if value is None:
            values.append(None)
            continue
        try:
            values.append(json.loads(value))
        except ValueError:
            raise _RowError(i, f"value {value[:40]!r} is not a JSON array", col.name) from None
    try:
        return pa.chunked_array([pa.array(values, typ)], typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise FormatError(
            path, f"array values do not fit {col.subtype}: {exc}", column=col.name
        ) from None


# -- kbmod packed tables ----------------------------------------------------------------------
def _unpack_kbmod(path: Path, table: pa.Table, header: EcsvHeader) -> tuple[pa.Table, list[str]]:
    meta = header.meta
    if not meta.get("is_packed"):
        return table, []
    shared = meta.get("shared_cols") or []
    for name in shared:
        if name not in meta:
            raise FormatError(
                path, f"packed table: shared column {name!r} has no value in the meta"
            )
        if name in table.column_names:
            raise FormatError(path, f"packed table: shared column {name!r} is also a real column")
        value = meta[name]
        array = (
            pa.array([value] * table.num_rows) if value is not None else pa.nulls(table.num_rows)
        )
        table = table.append_column(
            pa.field(name, array.type, metadata={"kbmod_shared": "true"}), array
        )
    return table, list(shared)


# -- astropy Time mixins ----------------------------------------------------------------------
_MASKED_COLUMN = "astropy.table.column.MaskedColumn"


def _serialized(path: Path, header: EcsvHeader) -> dict[str, Any]:
    """The header's ``__serialized_columns__``: how astropy stored its mixin columns."""
    serialized = header.meta.get("__serialized_columns__") or {}
    if not isinstance(serialized, dict):
        raise FormatError(path, "__serialized_columns__ is not a mapping")
    return serialized


def _masked_arrays(spec: Any) -> Iterator[tuple[dict, bool]]:
    """Each masked array stored in a serialized column's spec (a MaskedColumn, or a
    MaskedNDArray inside a Quantity or Time), with whether it is a MaskedColumn."""
    if not isinstance(spec, dict):
        return
    kind = str(spec.get("__class__", ""))
    if kind == _MASKED_COLUMN or kind.endswith(".MaskedNDArray"):
        yield spec, kind == _MASKED_COLUMN
    for value in spec.values():
        yield from _masked_arrays(value)


def _apply_masks(path: Path, table: pa.Table, header: EcsvHeader) -> pa.Table:
    """Masked arrays astropy wrote as data and mask (``serialize_method="data_mask"``, or a
    masked Quantity's): each value as it is, and (when one is masked) a ``<name>.mask``
    column of bools, one per row or (an array column) per element. As astropy reads them,
    masked values become missing and the mask column goes. A MaskedColumn's empty text is
    empty (the parse made it missing: its data has no missing values of its own); a masked
    array without a mask column keeps its missing values as its mask (Time's)."""
    for name, spec in _serialized(path, header).items():
        for masked, is_column in _masked_arrays(spec):
            data_name = _stored_in(masked.get("data"))
            mask_name = _stored_in(masked.get("mask")) if "mask" in masked else None
            names = table.column_names
            if data_name not in names or ("mask" in masked and mask_name not in names):
                raise FormatError(
                    path, f"masked column {name!r}: its data or mask column is missing"
                )
            at = names.index(data_name)
            text = is_column and pa.types.is_string(table.schema.field(at).type)
            if mask_name is None and not text:
                continue  # no mask column: its missing values are its mask (Time's)
            data = table.column(at).combine_chunks()
            if text:
                data = data.fill_null("")
            if mask_name is not None:
                mask = table.column(mask_name).combine_chunks()
                try:
                    data = _masked(data, mask)
                except (TypeError, pa.ArrowException):
                    raise FormatError(
                        path, f"masked column {name!r}: its mask does not fit its values"
                    ) from None
            table = table.set_column(at, table.schema.field(at), data)
            if mask_name is not None:
                table = table.remove_column(table.column_names.index(mask_name))
    return table


def _masked(data: pa.Array, mask: pa.Array) -> pa.Array:
    """``data`` missing where ``mask`` is true: a bool per row, or per element of a
    fixed-shape array column (lists of bools of the same shape)."""
    import pyarrow.compute as pc

    if isinstance(data.type, pa.BaseExtensionType):  # arrow.json: its text
        return pa.ExtensionArray.from_storage(data.type, _masked(data.storage, mask))
    if pa.types.is_boolean(mask.type):
        return pc.if_else(mask.fill_null(False), pa.scalar(None, data.type), data)
    if not (pa.types.is_fixed_size_list(data.type) and pa.types.is_fixed_size_list(mask.type)):
        raise TypeError("a mask of another shape")
    if data.type.list_size != mask.type.list_size or data.offset or mask.offset:
        raise TypeError("a mask of another shape")
    inner = _masked(data.values, mask.values)
    rows = data.is_null()
    return pa.FixedSizeListArray.from_arrays(
        inner, data.type.list_size, mask=rows if rows.true_count else None
    )


def _decode_time_mixins(path: Path, table: pa.Table, header: EcsvHeader) -> pa.Table:
    for name, spec in _serialized(path, header).items():
        if not isinstance(spec, dict) or spec.get("__class__") != _TIME_CLASS:
            continue  # other mixins (SkyCoord, …) stay as their component columns
        table = _time_column(path, table, name, spec)
    return table


def _time_column(path: Path, table: pa.Table, name: str, spec: dict) -> pa.Table:
    import pyarrow.compute as pc
    from astropy.time import Time

    _offline_iers()
    fmt, scale = spec.get("format", "isot"), spec.get("scale", "utc")
    value_names = {k: _stored_in(v) for k, v in spec.items() if isinstance(v, dict)}
    try:
        if value_names.get("jd1") and value_names.get("jd2"):
            consumed = [value_names["jd1"], value_names["jd2"]]
            raw1, raw2 = (table.column(c) for c in consumed)
            mask = pc.or_(raw1.is_null(), raw2.is_null()).to_numpy(zero_copy_only=False)
            # a missing time as J2000 until masked (any JD would do; a far one warns)
            jd1 = raw1.fill_null(2451545.0).to_numpy(zero_copy_only=False)
            jd2 = raw2.fill_null(0.0).to_numpy(zero_copy_only=False)
            t = Time(jd1, jd2, format="jd", scale=scale)
        else:
            col = value_names.get("value") or name
            consumed = [col]
            raw = table.column(col)
            mask = raw.is_null().to_numpy(zero_copy_only=False)
            t = None
            if not mask.all():  # a missing value as a present one until masked (its format)
                filled = raw.fill_null(raw.drop_null()[0]) if mask.any() else raw
                values = filled.to_numpy(zero_copy_only=False)
                if pa.types.is_string(raw.type):
                    values = values.astype(str)
                t = Time(values, format=fmt, scale=scale)
    except (ValueError, KeyError, TypeError, pa.ArrowException) as exc:
        raise FormatError(
            path, f"Time column cannot be decoded ({fmt}, {scale}): {exc}", column=name
        ) from None
    if t is None:  # every value missing
        array = pa.nulls(table.num_rows, pa.timestamp("us"))
    else:
        array = pa.array(utc_datetime64(t), pa.timestamp("us"), mask=mask if mask.any() else None)
    first = table.column_names.index(consumed[0])
    old = table.schema.field(consumed[0])
    md = dict(old.metadata or {})
    md[TIME_METADATA_KEY] = json.dumps(time_attributes(spec)).encode()
    for c in consumed:
        table = table.remove_column(table.column_names.index(c))
    return table.add_column(first, pa.field(name, array.type, metadata=md), array)


def _stored_in(component: Any) -> str | None:
    """The column a serialized component is stored in: its ``name``, or, for a masked one
    (astropy 8 writes ``{__class__: …MaskedNDArray, data: {name: …}}``), its ``data``'s;
    ``None`` for anything else."""
    if not isinstance(component, dict):
        return None
    name = component.get("name")
    return name if isinstance(name, str) else _stored_in(component.get("data"))


#: field metadata of a column decoded from an astropy Time mixin: its attributes as JSON
#: (format, scale, precision, subformats), so that astropy outputs give the Time back
TIME_METADATA_KEY = b"astropy_time"


def time_attributes(spec: dict) -> dict[str, Any]:
    """The plain attributes of a serialized Time (``format``, ``scale``, ``precision``,
    ``in_subfmt``, ``out_subfmt``); not its value columns or a location."""
    attributes = {"format": "isot", "scale": "utc"}
    attributes.update(
        {
            k: v
            for k, v in spec.items()
            if k != "__class__" and isinstance(v, (str, int, float, bool))
        }
    )
    return attributes


_IERS_SET = False


def _offline_iers() -> None:
    """Leap seconds from the installed tables; never try the network."""
    global _IERS_SET
    if not _IERS_SET:
        from astropy.utils import iers

        iers.conf.auto_download = False
        _IERS_SET = True


def utc_datetime64(t) -> np.ndarray:
    """An astropy Time as ``datetime64[us]`` in UTC: astropy's ``utc.isot`` to the microsecond.

    ERFA's ``d2dtf`` (what astropy formats ``isot`` with) splits the UTC two-part JD into
    calendar fields rounded to the microsecond, in C, and numpy assembles them, where
    astropy's ``datetime64`` goes through text, truncates instead of rounding
    (58576.2 TAI would become 04:47:22.999999) and refuses a leap second. A time inside a leap
    second (23:59:60.x) lands on 00:00:00.x of the next day, as on a POSIX clock.
    """
    from nightlake.ingest.taitime import utc_jd_to_datetime64

    utc = t.utc
    return utc_jd_to_datetime64(utc.jd1, utc.jd2)


__all__ = [
    "ColumnSpec",
    "EcsvHeader",
    "EcsvTable",
    "ECSV_TYPES",
    "parse_header",
    "read_ecsv",
]
