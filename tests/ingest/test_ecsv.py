"""ECSV → Arrow equals astropy's own reading, cell for cell; bad files give one clear error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from astropy.table import Table
from astropy.time import Time
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import assert_equals_astropy, astropy_cells
from strategies import ecsv_tables

from nightlake.errors import FormatError, InputError
from nightlake.ingest.ecsv import read_ecsv

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ecsv_tables())
def test_any_astropy_written_table_reads_the_same(tmp_path_factory, table):
    path = tmp_path_factory.mktemp("ecsv") / "t.ecsv"
    table.write(path, format="ascii.ecsv", overwrite=True)
    ours = read_ecsv(path)
    assert_equals_astropy(path, ours.table)


def test_types_units_and_descriptions_land_in_arrow(tmp_path):
    t = Table(
        {"a": np.array([1, 2], dtype="uint16"), "b": np.array([1.5, 2.5], dtype="float16")},
        meta={"survey": "DEEP"},
    )
    t["a"].unit = "s"
    t["a"].description = "exposure time"
    path = tmp_path / "t.ecsv"
    t.write(path, format="ascii.ecsv")
    got = read_ecsv(path)
    assert got.table.schema.field("a").type == pa.uint16()
    assert got.table.schema.field("b").type == pa.float16()
    md = got.table.schema.field("a").metadata
    assert md[b"unit"] == b"s" and md[b"description"] == b"exposure time"
    assert got.table_meta == {"survey": "DEEP"}
    assert "%ECSV 1.0" in got.header_text


def test_json_subtype_is_typed_json_text(tmp_path):
    col = np.empty(3, dtype=object)
    col[:] = [{"a": 1}, None, ["VR"]]
    path = tmp_path / "j.ecsv"
    Table({"j": col}).write(path, format="ascii.ecsv")
    got = read_ecsv(path).table
    assert "json" in str(got.schema.field("j").type)
    assert [None if v is None else json.loads(v) for v in got.column("j").to_pylist()] == [
        {"a": 1},
        None,
        ["VR"],
    ]


def test_time_mixin_becomes_utc_timestamp_across_a_leap_second(tmp_path):
    # 2016-12-31T23:59:60 UTC is a leap second; TAI is 37 s ahead of UTC after it.
    t = Table({"t": Time(["2017-01-01T00:00:37", "2017-01-01T00:01:00"], scale="tai")})
    path = tmp_path / "t.ecsv"
    t.write(path, format="ascii.ecsv")
    got = read_ecsv(path).table
    assert got.schema.field("t").type == pa.timestamp("us")
    assert [str(v) for v in got.column("t").to_pylist()] == [
        "2017-01-01 00:00:00",
        "2017-01-01 00:00:23",
    ]


@pytest.mark.parametrize(
    "name",
    [
        "real/missing_data.ecsv",
        "real/table_IV_V.ecsv",
        "real/refcats_ps1.ecsv",
        "real/exposures_object_raw.ecsv",
        "deep_table_II.ecsv",
        "ecsv/all_types.ecsv",
    ],
)
def test_real_files_and_the_all_types_golden_file_read_like_astropy(name):
    path = FIXTURES / name
    assert_equals_astropy(path, read_ecsv(path).table)


# -- bad input: one error naming the file and the cause -------------------------------------
GOOD = """# %ECSV 1.0
# ---
# datatype:
# - {name: a, datatype: int64}
# - {name: b, datatype: string}
# schema: astropy-2.0
a b
1 x
2 "y z"
"""


def _error(tmp_path, text, name="bad.ecsv") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(InputError) as info:
        read_ecsv(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_good_sample_reads(tmp_path):
    path = tmp_path / "good.ecsv"
    path.write_text(GOOD)
    assert read_ecsv(path).table.to_pylist() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y z"}]


def test_error_not_ecsv(tmp_path):
    assert "not an ECSV file" in _error(tmp_path, "a,b\n1,2\n")


def test_error_empty_file(tmp_path):
    assert "empty file" in _error(tmp_path, "")


def test_error_bad_yaml(tmp_path):
    assert "bad YAML" in _error(
        tmp_path, GOOD.replace("{name: a, datatype: int64}", "{name: a, [[")
    )


def test_error_unknown_datatype(tmp_path):
    msg = _error(tmp_path, GOOD.replace("datatype: int64", "datatype: int128"))
    assert "unknown datatype 'int128'" in msg and "'a'" in msg


def test_error_wrong_number_of_fields_names_the_line(tmp_path):
    msg = _error(tmp_path, GOOD.replace('2 "y z"', "2 y z"))
    assert ":9:" in msg and "expected 2 fields, found 3" in msg


def test_error_value_of_wrong_type_names_line_and_column(tmp_path):
    msg = _error(tmp_path, GOOD.replace('2 "y z"', "2.5 w"))
    assert ":9:" in msg and "column 'a'" in msg and "'2.5' is not a valid int64" in msg


def test_error_body_not_utf8_names_the_line(tmp_path):
    msg = _error(tmp_path, GOOD.replace('"y z"', '"y\xff"').encode("latin-1"))
    assert ":9:" in msg and "not UTF-8 text (byte 0xff)" in msg


def test_non_ascii_text_reads_like_astropy(tmp_path):
    """The UTF-8 check is skipped for ASCII files only: other text still reads exactly."""
    path = tmp_path / "utf8.ecsv"
    path.write_text(GOOD.replace('"y z"', '"Déjà vu ☉"'), encoding="utf-8")
    assert (
        read_ecsv(path).table.column("b").to_pylist()
        == list(Table.read(path, format="ascii.ecsv")["b"])
        == ["x", "Déjà vu ☉"]
    )


def test_error_duplicate_column_names(tmp_path):
    text = GOOD.replace("{name: b, datatype: string}", "{name: a, datatype: string}").replace(
        "\na b\n", "\na a\n"
    )
    assert "duplicate column name 'a'" in _error(tmp_path, text)


def test_error_names_line_disagrees_with_header(tmp_path):
    assert "does not match" in _error(tmp_path, GOOD.replace("\na b\n", "\na c\n"))


def test_error_unreadable_path(tmp_path):
    with pytest.raises(InputError, match="no-such.ecsv: cannot read"):
        read_ecsv(tmp_path / "no-such.ecsv")
    with pytest.raises(InputError, match="is a directory"):
        read_ecsv(tmp_path)


def test_format_errors_are_input_errors():
    assert issubclass(FormatError, InputError)


def test_body_lines_starting_with_hash_are_comments_as_in_astropy(tmp_path):
    path = tmp_path / "c.ecsv"
    path.write_text(GOOD.replace('2 "y z"\n', '# a comment line\n  #another\n2 "y #z"\n'))
    assert read_ecsv(path).table.to_pylist() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y #z"}]
    assert_equals_astropy(path, read_ecsv(path).table)


@pytest.mark.parametrize("comments", [False, True])
def test_big_files_are_hashed_while_they_parse(tmp_path, monkeypatch, comments):
    """Above PARALLEL_BYTES the hash runs beside the parse: same table, same sha256 as the
    small-file path (and as hashlib on the file), comment lines dropped as there."""
    import hashlib

    import nightlake.ingest.ecsv as ecsv_module

    path = tmp_path / "c.ecsv"
    text = (
        GOOD.replace('2 "y z"\n', '# a comment line\n  #another\n2 "y #z"\n') if comments else GOOD
    )
    path.write_text(text)
    small = read_ecsv(path)
    monkeypatch.setattr(ecsv_module, "PARALLEL_BYTES", 0)
    big = read_ecsv(path)
    assert big.table.equals(small.table)
    assert big.sha256 == small.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert_equals_astropy(path, big.table)
    assert ("y #z" in big.table.column("b").to_pylist()) == comments


def _read_both(path: Path, scan: int = 1 << 22, head: int = 1 << 20) -> tuple:
    """read_ecsv of ``path`` in memory and streamed (PARALLEL_BYTES 0; its header read in
    ``head`` bytes, its body scanned ``scan`` bytes at a time): its table, sha256 and size,
    or its error's text, each way."""
    import nightlake.ingest.ecsv as ecsv_module

    out = []
    for streamed in (False, True):
        with pytest.MonkeyPatch.context() as patch:
            if streamed:
                patch.setattr(ecsv_module, "PARALLEL_BYTES", 0)
                patch.setattr(ecsv_module, "SCAN_BYTES", scan)
                patch.setattr(ecsv_module, "HEAD_BYTES", head)
            try:
                got = read_ecsv(path)
            except InputError as exc:
                out.append(str(exc))
            else:
                out.append((got.table, got.sha256, got.size, got.header_text))
    return tuple(out)


# body lines a big file's streamed read must hand to the in-memory read, and bad values
_ODD_LINES = st.sampled_from(
    ["# a comment\n", "  # indented\n", "\t#tab\n", "\n", "   \n", "x y z\n", '"#" 1\n']
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ecsv_tables(),
    st.lists(st.tuples(st.integers(0, 8), _ODD_LINES), max_size=2),
    st.integers(1, 64),
    st.integers(16, 2048),
)
def test_a_big_files_streamed_read_equals_its_in_memory_read(
    tmp_path_factory, table, odd, scan_bytes, head_bytes
):
    """Streamed (a big file: parsed from the file, hashed beside) or in memory, a file
    reads the same: table, hash, stamps, or the same error, whatever lines its body has and
    wherever its scan's chunks and its first read end (lines across them, a header longer
    than the first read)."""
    path = tmp_path_factory.mktemp("ecsv") / "t.ecsv"
    table.write(path, format="ascii.ecsv", overwrite=True)
    head, _, body = path.read_text().partition("\n" + " ".join(table.colnames) + "\n")
    lines = body.splitlines(keepends=True)
    for at, line in odd:
        lines.insert(min(at, len(lines)), line)
    path.write_text(head + "\n" + " ".join(table.colnames) + "\n" + "".join(lines))
    in_memory, streamed = _read_both(path, scan_bytes, head_bytes)
    if isinstance(in_memory, str):
        # pyarrow numbers the row of an error it could not place only on one thread
        assert streamed == re.sub(r"Row #\d+: ", "", in_memory) or streamed == in_memory
    else:
        assert _bits(streamed[0]) == _bits(in_memory[0]) and streamed[1:] == in_memory[1:]


def _bits(table: pa.Table) -> bytes:
    """A table's schema and values as bytes (NaN equal to NaN, unlike ``Table.equals``)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return sink.getvalue().to_pybytes()


def test_a_plain_big_file_is_not_read_into_memory(tmp_path, monkeypatch):
    import nightlake.ingest.ecsv as ecsv_module

    path = tmp_path / "c.ecsv"
    path.write_text(GOOD)
    expected = read_ecsv(path)
    monkeypatch.setattr(ecsv_module, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(ecsv_module, "_read_in_memory", None)  # a call would fail
    got = read_ecsv(path)
    assert got.table.equals(expected.table) and got.sha256 == expected.sha256


def _once_the_header_is_read(monkeypatch, action) -> None:
    """Big files streamed, ``action()`` run once their header is read, before the body is
    opened for the parse (as another process could)."""
    import nightlake.ingest.ecsv as ecsv_module

    real = ecsv_module.parse_header
    monkeypatch.setattr(ecsv_module, "PARALLEL_BYTES", 0)

    def parse_header(*args):
        out = real(*args)
        action()
        return out

    monkeypatch.setattr(ecsv_module, "parse_header", parse_header)


def test_a_comment_line_that_would_parse_as_a_row_is_a_comment_when_streamed(tmp_path, monkeypatch):
    import nightlake.ingest.ecsv as ecsv_module

    path = tmp_path / "c.ecsv"
    header = GOOD.split("a b\n")[0].replace("a, datatype: int64", "c, datatype: string")
    path.write_text(
        header.replace("b, datatype: string", "a, datatype: int64") + "c a\nx 1\n#y 2\n"
    )
    expected = [{"c": "x", "a": 1}]
    assert read_ecsv(path).table.to_pylist() == expected
    monkeypatch.setattr(ecsv_module, "PARALLEL_BYTES", 0)
    for scan in range(1, path.stat().st_size + 1):  # the '#' anywhere in a scan's chunk
        monkeypatch.setattr(ecsv_module, "SCAN_BYTES", scan)
        assert read_ecsv(path).table.to_pylist() == expected, scan


def test_a_file_written_while_it_is_read_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "c.ecsv"
    path.write_text(GOOD)
    _once_the_header_is_read(monkeypatch, lambda: path.write_text(GOOD + '3 "z"\n'))
    with pytest.raises(InputError, match="changed while it was read") as err:
        read_ecsv(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("change", ["append", "rewrite the same size"])
def test_a_small_file_written_while_it_is_read_is_refused(tmp_path, monkeypatch, change):
    """The in-memory read: the file grows, or is rewritten in place (same size, new mtime),
    between its stat and its read."""
    import os

    import nightlake.ingest.ecsv as ecsv_module

    path = tmp_path / "c.ecsv"
    path.write_text(GOOD)
    real = ecsv_module.not_a_regular_file

    def write(*args):
        problem = real(*args)
        if len(args) == 2:  # called with the opened file's stat, before it is read
            if change == "append":
                path.write_text(GOOD + '3 "z"\n')
            else:
                path.write_text(GOOD.replace('"y z"', '"y q"'))
                later = path.stat().st_mtime_ns + 10**9
                os.utime(path, ns=(later, later))
        return problem

    monkeypatch.setattr(ecsv_module, "not_a_regular_file", write)
    with pytest.raises(InputError, match="changed while it was read") as err:
        read_ecsv(path)
    assert str(path) in str(err.value)


def test_a_file_replaced_while_it_is_read_reads_as_opened(tmp_path, monkeypatch):
    """The parse reads the file that was opened (its inode), not what its name now is."""
    path, other = tmp_path / "c.ecsv", tmp_path / "other.ecsv"
    path.write_text(GOOD)
    other.write_text(GOOD.replace('"y z"', '"replaced"'))
    expected = read_ecsv(path)
    _once_the_header_is_read(monkeypatch, lambda: other.replace(path))
    got = read_ecsv(path)
    assert got.table.equals(expected.table) and got.sha256 == expected.sha256


def test_a_table_without_rows_reads_with_its_types(tmp_path):
    path = tmp_path / "empty-body.ecsv"
    path.write_text(GOOD.split("a b\n")[0] + "a b\n")
    got = read_ecsv(path).table
    assert got.num_rows == 0 and got.schema.field("a").type == pa.int64()


@pytest.mark.parametrize(
    "text, astropy_tags",
    [
        ("meta: !!omap\n- {survey: DEEP}", False),
        ("datatype:\n- {name: a, datatype: string, description: 'wow!'}", False),
        ("meta:\n  x: !astropy.table.SerializedColumn {name: x}", True),
        ("meta: {t: !!python/tuple [1, 2]}", True),
        ("meta: [!astropy.units.Unit {unit: m}]", True),
    ],
)
def test_astropys_yaml_tags_are_recognised(text, astropy_tags):
    from nightlake.ingest.ecsv import _ASTROPY_TAG

    assert (_ASTROPY_TAG.search(text) is not None) == astropy_tags


def test_a_survey_header_does_not_import_astropys_yaml_machinery(repo):
    """astropy.io.misc.yaml imports astropy.coordinates: 0.7 s for every `nightlake convert`."""
    import subprocess
    import sys

    script = (
        "import sys; from nightlake.ingest.ecsv import read_ecsv; "
        f"read_ecsv({str(repo / 'data/fixtures/collections/20190401_A0a.collection')!r}); "
        "print(sorted(m for m in sys.modules if m.startswith(('astropy.io.misc.yaml', "
        "'astropy.coordinates'))))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


_LINE = st.tuples(
    st.sampled_from(["", " ", "\t", "  \t"]),
    st.sampled_from(["", "#", "a", "1 #x", '"#"', "a b", "a\t", "a\tb", "a,b", "a, b", "a ,b"]),
    st.sampled_from(["", " ", "\t", ","]),
    st.sampled_from(["\n", "\r\n", ""]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE, max_size=8), st.integers(0, 3), st.integers(1, 6))
def test_the_plain_body_test_agrees_with_the_plain_rule(lines, start, chunk):
    """A body is plain when no line starts with '#', a blank or a tab, or ends with a blank
    or a tab (before its newline): what astropy skips or strips (the body scanned in chunks
    of a few bytes, so lines cross chunk boundaries, and in one chunk). Blanks and tabs
    inside a line are the parsed values' test (_stripped)."""
    from nightlake.ingest.ecsv import _plain_body

    data = "".join("".join(parts) for parts in lines).encode()
    start = min(start, len(data))
    contents = [line.removesuffix(b"\r") for line in data[start:].split(b"\n")]
    expected = not any(c[:1] in (b"#", b" ", b"\t") or c[-1:] in (b" ", b"\t") for c in contents)
    assert _plain_body(data, start, chunk) == expected
    assert _plain_body(data, start) == expected


_BLANK_OR_NOT = st.sampled_from(["", "", " ", "\t", "  "])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ecsv_tables(),
    st.lists(st.tuples(_BLANK_OR_NOT, _BLANK_OR_NOT), min_size=8, max_size=8),
    st.lists(st.tuples(st.integers(0, 8), st.sampled_from(["  \n", "\t\n", " \t \n"]))),
    st.booleans(),
    st.sampled_from([" ", ","]),
)
def test_blank_lines_and_blanks_at_line_ends_read_as_in_astropy(
    tmp_path_factory, table, ends, blank_lines, streamed, delimiter
):
    """astropy skips blank lines and strips each line's ends: so do both reads."""
    import nightlake.ingest.ecsv as ecsv_module

    path = tmp_path_factory.mktemp("ecsv") / "t.ecsv"
    table.write(path, format="ascii.ecsv", overwrite=True, delimiter=delimiter)
    names_line = "\n" + delimiter.join(table.colnames) + "\n"
    head, names, body = path.read_text().partition(names_line)
    assert names and len(body.splitlines()) <= len(ends)
    lines = [before + line + after for line, (before, after) in zip(body.splitlines(), ends)]
    for at, line in blank_lines:
        lines.insert(min(at, len(lines)), line.rstrip("\n"))
    path.write_text(head + names + "\n".join(lines) + "\n")
    with pytest.MonkeyPatch.context() as patch:
        if streamed:
            patch.setattr(ecsv_module, "PARALLEL_BYTES", 0)
        assert_equals_astropy(path, read_ecsv(path).table)


# -- long fields and header bytes -----------------------------------------------------------
LONG = """# %ECSV 1.0
# ---
# datatype:
# - {name: visit, datatype: int64}
# - {name: wcs, datatype: string}
# schema: astropy-2.0
visit wcs
"""


@pytest.fixture(params=[200_000, 3 << 20])
def long_size(request, monkeypatch):
    """Beyond csv's field limit (128 kB); beyond a block, read on several threads (the limits
    lowered to keep the test fast: a 17 MB line in a 33 MB body behaves the same)."""
    if request.param > 1 << 20:
        import nightlake.ingest.ecsv as ecsv_module

        monkeypatch.setattr(ecsv_module, "BLOCK_BYTES", 1 << 20)
        monkeypatch.setattr(ecsv_module, "PARALLEL_BYTES", 1 << 20)
    return request.param


@pytest.mark.parametrize("long_size", [3 << 20], indirect=True)  # (200 kB read before)
def test_a_field_of_any_length_reads(tmp_path, long_size):
    size = long_size
    path = tmp_path / "long.ecsv"
    path.write_text(LONG + f'1 "{"w" * size}"\n2 short\n3 "{"v" * (size // 2)}"\n')
    table = read_ecsv(path).table
    assert table.column("visit").to_pylist() == [1, 2, 3]
    assert [len(v) for v in table.column("wcs").to_pylist()] == [size, 5, size // 2]


def test_a_bad_value_beside_a_long_field_names_its_line(tmp_path, long_size):
    size = long_size
    msg = _error(tmp_path, LONG + f'1 "{"w" * size}"\nx short\n')
    assert ":9:" in msg and "column 'visit'" in msg and "'x' is not a valid int64" in msg


_HEADER_LINES = GOOD.splitlines(keepends=True)[:7]  # up to and with the column-names line


@settings(max_examples=40, deadline=None)
@given(
    line=st.integers(2, 7),
    at=st.integers(0, 1000),
    bad=st.sampled_from(
        [
            b"\xff",
            b"\xc3\x28",
            b"\xed\xa0\x80",
            b"\xc0\xaf",
            b"\xe2\x82",
            b"\xf8\x88\x80\x80\x80",
            b"\x80",
        ]
    ),
)
def test_non_utf8_bytes_in_the_header_name_the_line(tmp_path_factory, line, at, bad):
    lines = [ln.encode() for ln in _HEADER_LINES]
    text = lines[line - 1]
    cut = 2 + at % (len(text) - 2)  # after the '# ' (the names line: anywhere before its end)
    if line == 7:
        cut = at % (len(text) - 1)
    lines[line - 1] = text[:cut] + bad + text[cut:]
    data = b"".join(lines) + b"1 x\n"
    msg = _error(tmp_path_factory.mktemp("h"), data)
    assert f":{line}: not UTF-8 text (byte 0x{bad[0]:02x})" in msg, msg


def test_non_utf8_bytes_in_a_header_comment_name_the_line(tmp_path):
    data = GOOD.replace("# schema", "# # note: caf\xe9\n# schema").encode("latin-1")
    assert ":6: not UTF-8 text (byte 0xe9)" in _error(tmp_path, data)


def _field_text(value: str, delimiter: str) -> str:
    """One value as csv writes it alone (quoted where it must be; empty as ``""``)."""
    import csv
    import io

    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, quotechar='"', lineterminator="").writerow([value])
    return out.getvalue()


_GAP = st.sampled_from(["", "", " ", "  ", "\t", " \t", "\t "])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ecsv_tables(), st.data(), st.booleans(), st.sampled_from([" ", ","]))
def test_blanks_and_tabs_between_values_read_as_in_astropy(
    tmp_path_factory, table, data, streamed, delimiter
):
    """astropy splits a body line with csv, skipping blanks after a delimiter, and strips
    each value of blanks and tabs: a hand-aligned body (several blanks between values, tabs,
    blanks around commas) reads as astropy reads it, on both reads."""
    import csv

    import nightlake.ingest.ecsv as ecsv_module

    path = tmp_path_factory.mktemp("ecsv") / "t.ecsv"
    table.write(path, format="ascii.ecsv", overwrite=True, delimiter=delimiter)
    names_line = "\n" + delimiter.join(table.colnames) + "\n"
    head, names, body = path.read_text().partition(names_line)
    assert names
    lines = []
    for line in body.splitlines():
        fields = next(csv.reader([line], delimiter=delimiter, quotechar='"'))
        text = _field_text(fields[0], delimiter)
        for value in fields[1:]:
            # a space delimiter and the blanks around it; a comma with blanks either side
            before, after = data.draw(_GAP), data.draw(_GAP)
            separator = before + delimiter + after
            if delimiter == " ":
                separator = before.replace("\t", "") + " " + after.lstrip("\t")
            text += separator + _field_text(value, delimiter)
        lines.append(text)
    path.write_text(head + names + "\n".join(lines) + "\n")
    try:  # a tab before a quote makes the quote data (csv's rule): astropy may refuse it
        astropy_cells(path)
    except (ValueError, TypeError):
        refused = True
    else:
        refused = False
    with pytest.MonkeyPatch.context() as patch:
        if streamed:
            patch.setattr(ecsv_module, "PARALLEL_BYTES", 0)
        if refused:  # then so does nightlake, in one line
            with pytest.raises(FormatError):
                read_ecsv(path)
        else:
            assert_equals_astropy(path, read_ecsv(path).table)


@pytest.mark.parametrize(
    "body, rows",
    [
        ('1   x   2.5\n2  "y z"  3\n', [[1, "x", 2.5], [2, "y z", 3.0]]),
        ("1 \tx\t 2.5\n2 y 3\n", [[1, "x", 2.5], [2, "y", 3.0]]),
        ('1, x, 2.5\n2 , "y z" ,3\n', [[1, "x", 2.5], [2, "y z", 3.0]]),
    ],
    ids=["aligned", "tabs", "blanks around commas"],
)
def test_a_hand_edited_body_reads_as_astropy_reads_it(tmp_path, body, rows):
    delimiter = "," if ", " in body else " "
    header = "\n".join(
        [
            "# %ECSV 1.0",
            "# ---",
            "# datatype:",
            "# - {name: a, datatype: int64}",
            "# - {name: s, datatype: string}",
            "# - {name: f, datatype: float64}",
            *([f"# delimiter: '{delimiter}'"] if delimiter == "," else []),
            "# schema: astropy-2.0",
            delimiter.join("asf"),
            "",
        ]
    )
    path = tmp_path / "hand.ecsv"
    path.write_text(header + body)
    got = read_ecsv(path).table
    assert [list(r.values()) for r in got.to_pylist()] == rows
    assert_equals_astropy(path, got)


def _both_reads(path: Path) -> list[pa.Table]:
    """read_ecsv of ``path`` in memory and streamed (PARALLEL_BYTES 0)."""
    import nightlake.ingest.ecsv as ecsv_module

    tables = [read_ecsv(path).table]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ecsv_module, "PARALLEL_BYTES", 0)
        tables.append(read_ecsv(path).table)
    return tables


@pytest.mark.parametrize("odd", ["", "# a comment line\n", "\t3 tabbed\n"])
def test_a_value_spanning_lines_keeps_its_newline_as_in_astropy(tmp_path, odd):
    """A quoted value holding a newline, as astropy writes one, in a plain body and in one
    split as astropy splits lines (a comment line, a tab)."""
    path = tmp_path / "t.ecsv"
    Table({"a": [1, 2], "b": ["line1\nline2", "x\ty"]}).write(path, format="ascii.ecsv")
    head, names, body = path.read_text().partition("\na b\n")
    path.write_text(head + names + odd + body)
    for table in _both_reads(path):
        assert table.column("b").to_pylist()[-2:] == ["line1\nline2", "x\ty"]
        assert_equals_astropy(path, table)


def test_an_error_after_a_value_spanning_lines_names_its_line(tmp_path):
    body = '1 "x y\nz"\n\t3 w\nq r\n'  # the tab: the body is split as astropy splits it
    msg = _error(tmp_path, GOOD.split("a b\n")[0] + "a b\n" + body)
    assert ":11:" in msg and "column 'a'" in msg and "'q' is not a valid int64" in msg


def test_an_aligned_body_with_a_bad_value_names_its_line(tmp_path):
    header = GOOD.split("a b\n")[0].replace("datatype: string", "datatype: bool")
    msg = _error(tmp_path, header + "a  b\n1  True\n2  TRUE\n")
    assert ":9:" in msg and "column 'b'" in msg and "'TRUE' is not a valid bool" in msg


@pytest.mark.parametrize("delimiter", [" ", ","])
def test_blanks_inside_a_values_quotes_are_stripped_as_in_astropy(tmp_path, delimiter):
    """The body is plain; pyarrow keeps the blanks of a quoted value, astropy strips them."""
    header = GOOD.split("a b\n")[0]
    if delimiter == ",":
        header = header.replace("# schema", "# delimiter: ','\n# schema")
    d = delimiter
    path = tmp_path / "t.ecsv"
    path.write_text(header + f'a{d}b\n1{d}" x "\n2{d}"y\t"\n3{d}z\n')
    for table in _both_reads(path):
        assert table.column("b").to_pylist() == ["x", "y", "z"]
        assert_equals_astropy(path, table)


def test_a_names_line_with_blanks_around_commas_reads_as_in_astropy(tmp_path):
    header = GOOD.split("a b\n")[0].replace("# schema", "# delimiter: ','\n# schema")
    path = tmp_path / "t.ecsv"
    path.write_text(header + "a, b\n1, x\n")
    for table in _both_reads(path):
        assert table.column_names == ["a", "b"] and table.to_pylist() == [{"a": 1, "b": "x"}]
        assert_equals_astropy(path, table)


def test_a_comma_file_with_json_text_is_read_without_splitting_its_lines(tmp_path, monkeypatch):
    """', ' inside quotes (JSON as astropy writes it) leaves a body plain: pyarrow's parse."""
    import nightlake.ingest.ecsv as ecsv_module

    path = tmp_path / "t.ecsv"
    Table({"a": [1, 2], "b": ['{"k": 1, "m": [1, 2]}', "a, b"]}).write(
        path, format="ascii.ecsv", delimiter=","
    )
    assert ", " in path.read_text().split("a,b\n")[1]
    split = []
    real = ecsv_module._as_astropy_splits
    monkeypatch.setattr(ecsv_module, "_as_astropy_splits", lambda *a: split.append(a) or real(*a))
    for table in _both_reads(path):
        assert_equals_astropy(path, table)
    assert not split


def test_values_spanning_lines_across_parse_blocks(tmp_path, monkeypatch):
    """The split body holds quoted newlines wherever pyarrow cuts its blocks."""
    import nightlake.ingest.ecsv as ecsv_module

    path = tmp_path / "t.ecsv"
    values = [f"v{i}\n{'w' * (i % 7)}" for i in range(60)]
    Table({"a": list(range(60)), "b": values}).write(path, format="ascii.ecsv")
    head, names, body = path.read_text().partition("\na b\n")
    path.write_text(head + names + "# a comment line: split as astropy splits lines\n" + body)
    monkeypatch.setattr(ecsv_module, "BLOCK_BYTES", 32)
    table = read_ecsv(path).table
    assert table.column("b").to_pylist() == values
    assert_equals_astropy(path, table)


_JSON_HEADER = """# %ECSV 1.0
# ---
# datatype:
# - {name: a, datatype: int64}
# - {name: j, datatype: string, subtype: json}
# - {name: v, datatype: string, subtype: 'int64[null]'}
# schema: astropy-2.0
a j v
1 "{""k"": 1}" [1]
"""


@pytest.mark.parametrize("between", ["", "# a comment line\n\n"])
@pytest.mark.parametrize(
    "row, column, cause",
    [
        ('2 "{""k"": 1" [2]', "j", "is not valid JSON"),
        ('2 "{""k"": 2}" "[2,"', "v", "is not a JSON array"),
    ],
)
@pytest.mark.parametrize("streamed", [False, True])
def test_a_bad_json_or_array_value_names_its_line(
    tmp_path, monkeypatch, between, row, column, cause, streamed
):
    """Such values are checked once the body is parsed; the error still names the line the
    row is on, past comment and blank lines."""
    import nightlake.ingest.ecsv as ecsv_module

    if streamed:
        monkeypatch.setattr(ecsv_module, "PARALLEL_BYTES", 0)
    msg = _error(tmp_path, _JSON_HEADER + between + row + "\n")
    line = 10 + between.count("\n")
    assert f":{line}:" in msg and f"column '{column}'" in msg and cause in msg


@pytest.mark.parametrize("form", ["mjd", "iso", "jd1_jd2", "all masked"])
def test_a_masked_time_column_reads_as_in_astropy(tmp_path, form):
    """astropy 8 writes a masked Time's values as a masked array (``data: {name: …}``), its
    missing values as empty fields."""
    import warnings

    import numpy.ma

    t = Time([58576.2, 50000.1, 51000.5], format="mjd", scale="tt")
    t.format = "iso" if form == "iso" else "mjd"
    t[1] = numpy.ma.masked
    if form == "all masked":
        t[:] = numpy.ma.masked
    path = tmp_path / "t.ecsv"
    method = {"serialize_method": "jd1_jd2"} if form == "jd1_jd2" else {}
    Table({"t": t, "n": [1, 2, 3]}).write(path, format="ascii.ecsv", **method)
    assert "MaskedNDArray" in path.read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy's own reading of a masked time warns
        for table in _both_reads(path):
            assert table.column("t").null_count == (3 if form == "all masked" else 1)
            assert_equals_astropy(path, table)


def test_float16_text_rounds_once_as_in_astropy(tmp_path):
    """Parsed as float64 and cast, as numpy reads it: through float32, 2049.0000001 would
    round to 2049.0 first, then to 2048.0 (ties to even); numpy gives 2050.0."""
    header = GOOD.split("a b\n")[0].replace("datatype: string", "datatype: float16")
    path = tmp_path / "t.ecsv"
    path.write_text(header + "a b\n1 2049.0000001\n2 0.1\n")
    for table in _both_reads(path):
        assert table.column("b").to_pylist() == [2050.0, float(np.float16(0.1))]
        assert_equals_astropy(path, table)


@pytest.mark.parametrize("names", ["a b\t", "a b ", " a b"])
def test_a_names_line_with_blanks_at_its_ends_reads_as_in_astropy(tmp_path, names):
    path = tmp_path / "t.ecsv"
    path.write_text(GOOD.replace("a b\n", names + "\n"))
    for table in _both_reads(path):
        assert table.column_names == ["a", "b"]
        assert_equals_astropy(path, table)


@pytest.mark.parametrize("odd", ["\x0c", "\u2028", "\r"])
def test_an_error_line_counts_newlines_only(tmp_path, odd):
    """astropy also breaks lines at a form feed, U+2028 or a lone CR; an editor's line
    number counts newlines."""
    msg = _error(tmp_path, GOOD.replace('2 "y z"\n', f'2 "y{odd}z"\n3 w\nq r\n'))
    assert ":11:" in msg and "'q' is not a valid int64" in msg


@pytest.mark.parametrize(
    "delimiter, body, split",
    [
        (" ", 'a b\n1 "x  "\n2 " y"\n3 " "\n', False),
        (",", 'a,b\n1, y\n2,"z "\n3,\tw\n', False),
        (",", 'a,b\n1, "y z"\n2,w\n', True),
    ],
    ids=["padded quoted values", "blanks beside commas", "a quote after blanks"],
)
def test_blank_padded_values_are_stripped_without_splitting_lines(
    tmp_path, monkeypatch, delimiter, body, split
):
    """Values padded by another writer (astropy's strips them): pyarrow's parse, then the
    values stripped; only a quoted value after blanks (commas) needs the lines split."""
    import nightlake.ingest.ecsv as ecsv_module

    header = GOOD.split("a b\n")[0]
    if delimiter == ",":
        header = header.replace("# schema", "# delimiter: ','\n# schema")
    path = tmp_path / "t.ecsv"
    path.write_text(header + body)
    calls = []
    real = ecsv_module._as_astropy_splits
    monkeypatch.setattr(ecsv_module, "_as_astropy_splits", lambda *a: calls.append(1) or real(*a))
    for table in _both_reads(path):
        assert_equals_astropy(path, table)
    assert bool(calls) == split


@pytest.mark.parametrize("odd", ["", "# a comment line\n"])
def test_a_quoted_value_over_lines_longer_than_a_block_reads(tmp_path, monkeypatch, odd):
    """Each line fits a parse block, the value does not: blocks grow until a row fits."""
    import nightlake.ingest.ecsv as ecsv_module

    monkeypatch.setattr(ecsv_module, "BLOCK_BYTES", 64)
    value = "\n".join(["w" * 40] * 6)
    path = tmp_path / "t.ecsv"
    Table({"a": [1, 2], "b": [value, "y"]}).write(path, format="ascii.ecsv")
    head, names, body = path.read_text().partition("\na b\n")
    path.write_text(head + names + odd + body)
    for table in _both_reads(path):
        assert table.column("b").to_pylist() == [value, "y"]
        assert_equals_astropy(path, table)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ecsv_tables(), st.booleans())
def test_masked_columns_written_as_data_and_mask_read_as_in_astropy(
    tmp_path_factory, table, streamed
):
    """``serialize_method="data_mask"``: each masked column's values and a ``.mask`` column;
    its masked values are missing and the mask column goes, as in astropy."""
    import warnings

    from astropy.table import MaskedColumn

    import nightlake.ingest.ecsv as ecsv_module

    path = tmp_path_factory.mktemp("ecsv") / "t.ecsv"
    table.write(path, format="ascii.ecsv", serialize_method={MaskedColumn: "data_mask"})
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if streamed:
            patch.setattr(ecsv_module, "PARALLEL_BYTES", 0)
        got = read_ecsv(path).table
        assert not [n for n in got.column_names if n.endswith(".mask")]
        assert_equals_astropy(path, got)


def test_a_data_and_mask_column_reads_its_masked_values_as_missing(tmp_path):
    from astropy.table import MaskedColumn

    path = tmp_path / "t.ecsv"
    Table(
        {
            "i": MaskedColumn([1, 2, 3], mask=[False, True, False]),
            "s": MaskedColumn(["a", "", "c"], mask=[False, False, True]),
            "f": MaskedColumn([1.5, 2.5, 3.5], mask=[True, False, False]),
        }
    ).write(path, format="ascii.ecsv", serialize_method="data_mask")
    assert "i.mask" in path.read_text()
    for table in _both_reads(path):
        assert table.to_pylist() == [
            {"i": 1, "s": "a", "f": None},
            {"i": None, "s": "", "f": 2.5},
            {"i": 3, "s": None, "f": 3.5},
        ]
        assert_equals_astropy(path, table)


def _data_mask_table(kind: str):
    from astropy.table import MaskedColumn, QTable

    if kind == "json":
        values = np.array([{"a": 1}, [1, 2], None], dtype=object)
        return Table({"o": MaskedColumn(values, mask=[False, True, False])})
    if kind == "2-d elements":
        values = np.arange(6.0).reshape(3, 2)
        return Table({"m": MaskedColumn(values, mask=[[0, 1], [0, 0], [1, 1]])})
    if kind == "3-d elements":
        values = np.arange(12.0).reshape(2, 3, 2)
        return Table({"m": MaskedColumn(values, mask=np.arange(12).reshape(2, 3, 2) % 5 == 0)})
    import astropy.units as u
    from astropy.utils.masked import Masked

    return QTable({"q": Masked([1.0, 2.0, 3.0] * u.m, mask=[False, True, False]), "a": [1, 2, 3]})


@pytest.mark.parametrize("kind", ["json", "2-d elements", "3-d elements", "quantity"])
def test_masked_arrays_written_as_data_and_mask_read_as_in_astropy(tmp_path, kind):
    """A JSON column, masks per element of an array column, a masked Quantity (its mask
    inside the Quantity's value)."""
    import warnings

    path = tmp_path / "t.ecsv"
    _data_mask_table(kind).write(path, format="ascii.ecsv", serialize_method="data_mask")
    assert ".mask" in path.read_text().split("# schema")[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for table in _both_reads(path):
            assert not [n for n in table.column_names if n.endswith(".mask")]
            assert table.column(0).null_count or kind.endswith("elements")
            assert_equals_astropy(path, table)


_MASKED = "astropy.table.column.MaskedColumn"


@pytest.mark.parametrize(
    "serialized",
    [
        "# - __serialized_columns__: [1, 2]",
        f"# - __serialized_columns__:\n#     b: {{__class__: {_MASKED}, data: b}}",
        f"# - __serialized_columns__:\n#     b:\n#       __class__: {_MASKED}\n"
        "#       data: !astropy.table.SerializedColumn {name: b}\n#       mask: 3",
    ],
    ids=["not a mapping", "data not a column", "mask not a column"],
)
def test_a_broken_serialized_columns_entry_is_one_error_line(tmp_path, serialized):
    text = GOOD.replace("# schema", f"# meta: !!omap\n{serialized}\n# schema")
    msg = _error(tmp_path, text)
    assert "__serialized_columns__" in msg or "masked column 'b'" in msg
