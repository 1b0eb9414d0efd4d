"""DuckDB's Python rows (``stream_rows``, what ``nightlake sql`` prints text from) and the
Arrow stream give the same table, json and jsonl output, for every kind of value."""

from __future__ import annotations

import io

import duckdb
import pytest

from nightlake.query.output import ROW_FORMATS, write_result
from nightlake.query.stream import stream, stream_rows

COLUMNS = [
    "42::TINYINT AS i1",
    "-7::BIGINT AS i8",
    "300::UBIGINT AS u8",
    "1.5::DOUBLE AS f8",
    "'nan'::DOUBLE AS nan",
    "'inf'::FLOAT AS inf",
    "12.34::DECIMAL(9,2) AS dec",
    "'text, with \"quotes\"' AS s",
    "'line\nbreak' AS nl",
    "NULL::VARCHAR AS missing",
    "true AS flag",
    "DATE '2019-04-02' AS d",
    "TIMESTAMP '2019-04-02 01:02:03.25' AS ts",
    "TIME '01:02:03' AS t",
    "INTERVAL 90 SECOND AS iv",
    "'\\x01\\xff'::BLOB AS b",
    "[1, NULL, 3] AS list",
    "{'x': 1, 'y': [2.5]} AS struct",
    "MAP([1, 2], ['a', 'b']) AS map",
    "'8f3f4a48-d21d-402b-b303-b299aa18e170'::UUID AS uuid",
    "1 AS a",
    "2 AS a",
]


def _text(result, fmt: str) -> str:
    sink = io.BytesIO()
    write_result(result, fmt, sink)
    return sink.getvalue().decode()


@pytest.mark.parametrize("fmt", ROW_FORMATS)
@pytest.mark.parametrize("rows", [0, 1, 3])
def test_rows_and_arrow_print_the_same(fmt, rows):
    con = duckdb.connect()
    query = f"SELECT range AS n, {', '.join(COLUMNS)} FROM range({rows})"
    assert _text(stream_rows(con, query, batch_rows=2), fmt) == _text(stream(con, query), fmt)


def test_rows_refuse_what_stream_refuses():
    con = duckdb.connect()
    with pytest.raises(Exception) as by_stream:
        stream(con, "COPY (SELECT 1) TO 'x.csv'")
    with pytest.raises(type(by_stream.value)) as by_rows:
        stream_rows(con, "COPY (SELECT 1) TO 'x.csv'")
    assert str(by_rows.value) == str(by_stream.value)


def test_a_failing_query_is_a_query_error_with_its_position():
    from nightlake.errors import QueryError

    con = duckdb.connect()
    query = "SELECT CAST(CASE WHEN range < 5 THEN '1' ELSE 'x' END AS INTEGER) FROM range(99999)"
    with pytest.raises(QueryError, match=r"Conversion.*\(line 1, column 8\)"):
        for _ in stream_rows(con, query, batch_rows=2):
            pass
