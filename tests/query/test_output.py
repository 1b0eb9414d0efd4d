"""Output writers: every format streams batch by batch; format choice; atomic files."""

from __future__ import annotations

import io

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import read_table

from nightlake.errors import UsageError
from nightlake.query.output import (
    FORMATS,
    choose_format,
    write_result,
    write_result_file,
    write_table,
)


class CountingSink(io.BytesIO):
    """Records, at every write, how many batches the source had produced by then."""

    def __init__(self, produced):
        super().__init__()
        self.produced = produced
        self.seen = []

    def write(self, data):
        self.seen.append(self.produced[0])
        return super().write(data)


def lazy_reader(batches: int, rows: int, produced):
    schema = pa.schema([("i", pa.int64()), ("s", pa.string())])

    def gen():
        for b in range(batches):
            produced[0] = b + 1
            yield pa.record_batch(
                [
                    pa.array(range(b * rows, (b + 1) * rows)),
                    pa.array([f"row {i}" for i in range(rows)]),
                ],
                schema=schema,
            )

    return pa.RecordBatchReader.from_batches(schema, gen())


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_writes_while_batches_still_come(fmt):
    produced = [0]
    sink = CountingSink(produced)
    rows = write_result(lazy_reader(20, 500, produced), fmt, sink)
    assert rows == 20 * 500
    # output was written before the last batch was produced: nothing waits for all rows
    assert min(n for n in sink.seen if n) < 20


@pytest.mark.parametrize(
    "fmt, output, terminal, expected",
    [
        (None, None, True, "table"),
        (None, None, False, "csv"),
        ("JSON", None, True, "json"),
        (None, "x.parquet", True, "parquet"),
        (None, "x.NDJSON", False, "jsonl"),
        ("csv", "x.parquet", False, "csv"),
    ],
)
def test_choose_format(fmt, output, terminal, expected):
    assert choose_format(fmt, output, terminal) == expected


def test_empty_result_still_has_a_header():
    schema = pa.schema([("night", pa.string()), ("n", pa.int64())])
    empty = pa.RecordBatchReader.from_batches(schema, [])
    sink = io.BytesIO()
    write_result(empty, "csv", sink)
    assert sink.getvalue() == b"night,n\n"
    table_sink = io.BytesIO()
    write_result(pa.RecordBatchReader.from_batches(schema, []), "table", table_sink)
    assert table_sink.getvalue().decode().splitlines()[-1] == "(0 rows)"


def test_unknown_extension_is_a_usage_error():
    with pytest.raises(UsageError, match="cannot tell the format"):
        choose_format(None, "result.xlsx", False)


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "r.jsonl"
    target.write_text("old\n")
    schema = pa.schema([("i", pa.int64())])

    def boom():
        yield pa.record_batch([pa.array([1])], schema=schema)
        raise RuntimeError("query failed midway")

    with pytest.raises(RuntimeError):
        write_result_file(pa.RecordBatchReader.from_batches(schema, boom()), "jsonl", target)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.jsonl"]


@pytest.mark.parametrize("fmt", ["table", "json", "jsonl", "csv"])
def test_repeated_column_names(fmt):
    schema = pa.schema([("a", pa.int64()), ("a", pa.int64()), ("A", pa.string())])
    batch = pa.record_batch([pa.array([1]), pa.array([2]), pa.array(["x"])], schema=schema)
    sink = io.BytesIO()
    write_result(pa.RecordBatchReader.from_batches(schema, [batch]), fmt, sink)
    text = sink.getvalue().decode()
    if fmt.startswith("json"):
        assert '{"a": 1, "a_1": 2, "A_2": "x"}' in text
    else:
        assert "1" in text and "2" in text and "x" in text


# no blanks (the reader strips cells) and no line breaks of any kind (one row is one line)
CELLS = st.one_of(
    st.none(),
    st.integers(-(10**12), 10**12),
    st.text(st.characters(max_codepoint=0x2FF, exclude_categories=("C", "Z")), max_size=50),
)


NAMES = st.lists(st.from_regex(r"[a-z]{1,8}", fullmatch=True), min_size=1, max_size=5, unique=True)


@given(
    NAMES.flatmap(
        lambda names: st.tuples(
            st.just(names), st.lists(st.lists(CELLS, min_size=len(names), max_size=len(names)))
        )
    ),
    st.sampled_from([None, 5, 40]),
)
def test_write_table_reads_back_as_its_rows(names_rows, cell_width):
    """Every cell is read back in its column, None as NULL, with the row count at the end.
    Widths come from the first batch (rows stream), at most ``cell_width``: a longer cell is
    cut to its column's width with an ellipsis."""
    names, rows = names_rows
    texts = [["NULL" if v is None else str(v) for v in row] for row in rows]
    first = texts[:3]
    widths = [max([len(n)] + [len(row[i]) for row in first]) for i, n in enumerate(names)]
    if cell_width is not None:
        widths = [min(w, max(cell_width, len(n))) for w, n in zip(widths, names)]
    expected = [
        {n: t if len(t) <= w else t[: w - 1] + "…" for n, t, w in zip(names, row, widths)}
        for row in texts
    ]
    out: list[str] = []
    assert write_table(names, [rows[:3], rows[3:]], out.append, cell_width=cell_width) == len(rows)
    assert read_table("".join(out)) == expected
