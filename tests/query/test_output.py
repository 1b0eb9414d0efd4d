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
    RELATION_FORMATS,
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
    # DuckDB writes CSV in blocks of a few MB: enough rows to fill several
    per_batch = 100_000 if fmt in RELATION_FORMATS else 500
    rows = write_result(lazy_reader(20, per_batch, produced), fmt, sink)
    if fmt in RELATION_FORMATS:  # DuckDB does not count the rows it writes
        assert sink.getvalue().count(b"\n") == 1 + 20 * per_batch
    else:
        assert rows == 20 * per_batch
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


CSV_VALUES = (
    "SELECT 1::INT AS i, 2.5 AS d, 1e-7::DOUBLE AS small, 'x,y\"z' AS s, '' AS empty, "
    "NULL::INT AS n, true AS b, DATE '2019-04-02' AS day, TIMESTAMP '2019-04-02 03:04:05.5' AS t, "
    "[1, 2] AS l, {'a': 'b'} AS st, 'a\nb' AS two_lines"
)


@pytest.mark.parametrize("fmt, delimiter", [("csv", ","), ("tsv", "\t")])
def test_csv_from_duckdb_on_stdout_and_in_a_file_alike(tmp_path, fmt, delimiter):
    import csv
    import json

    import duckdb

    from nightlake.query.stream import Relation

    con = duckdb.connect()
    sink = io.BytesIO()
    write_result(Relation(con.sql(CSV_VALUES)), fmt, sink)
    write_result_file(Relation(con.sql(CSV_VALUES)), fmt, tmp_path / f"r.{fmt}")
    assert (tmp_path / f"r.{fmt}").read_bytes() == sink.getvalue()
    header, row = list(csv.reader(io.StringIO(sink.getvalue().decode()), delimiter=delimiter))
    names = [d[0] for d in con.sql(CSV_VALUES).description]
    assert header == names
    # each flat value as DuckDB casts it to text; NULL empty; nested values as JSON
    texts = con.execute(
        "SELECT "
        + ", ".join(f'CAST("{n}" AS VARCHAR)' for n in names[:9])
        + f" FROM ({CSV_VALUES})"
    ).fetchone()
    assert row[:9] == [("" if t is None else t) for t in texts]
    assert sink.getvalue().count(b'""') >= 2  # '' quoted, unlike NULL; the quote doubled
    assert json.loads(row[9]) == [1, 2] and json.loads(row[10]) == {"a": "b"}
    assert row[11] == "a\nb"


def test_a_writer_that_fails_before_opening_its_pipe_fails_the_write():
    from nightlake.query.output import _through_pipe

    def fails(_path):
        raise RuntimeError("bound nothing")

    with pytest.raises(RuntimeError, match="bound nothing"):
        _through_pipe(fails, io.BytesIO())


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
