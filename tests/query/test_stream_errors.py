"""DuckDB's errors on every path of a query (parsing, an earlier statement of a script,
binding the last one, its first rows, its rows mid-stream) and every way of reading the result
(Arrow, Python rows, CSV) become the same one-line :class:`QueryError` with the offending
token's position in the whole script."""

from __future__ import annotations

import io

import duckdb
import pytest

from nightlake.errors import QueryError
from nightlake.query.output import write_result
from nightlake.query.stream import stream, stream_relation, stream_rows

LATE = "CASE WHEN range > 250000 THEN CAST('a' || range AS INT) ELSE range END"
#: (script, the token the error points at, how the message starts)
CASES = [
    ("SELECT 1;\nSELECT 2 FRM x", "x", "Parser Error: syntax error"),
    ("SELECT 1;\nCREATE TEMP TABLE t AS SELECT nosuch FROM range(3); SELECT 1", "nosuch", "Binder"),
    ("SELECT 1;\nSELECT 2,\n   nosuch FROM range(3)", "nosuch", "Binder Error"),
    ("SELECT 1;\nSELECT 1 +\n 'a'::INT, nosuch(3)", "nosuch", "Catalog Error"),
    ("SELECT 1;\nSELECT 2,\n  CAST('x' || range AS INT) FROM range(10)", "CAST", "Conversion"),
    (f"SELECT 1;\n  SELECT 1, {LATE} AS v FROM range(300000)", "CAST", "Conversion Error"),
    # the same text on an earlier line of the statement: the line is still the right one
    ("SELECT 1;\nSELECT 'bogus' AS s,\n bogus\nFROM range(3)", "bogus", "Binder Error"),
    ("SELECT 1;\nEXPLAIN\nSELECT 1,\n  nosuch FROM range(3)", "nosuch", "Binder Error"),
    (
        "SELECT 1; -- c\nEXPLAIN -- SELECT nosuch FROM range(3)\nSELECT nosuch FROM range(3)",
        "nosuch",
        "Binder Error",
    ),
]
WAYS = {
    "arrow": lambda con, q: stream(con, q, batch_rows=7).read_all(),
    "rows": lambda con, q: [batch for batch in stream_rows(con, q, batch_rows=7)],
    "csv": lambda con, q: write_result(stream_relation(con, q), "csv", io.BytesIO()),
}


def _position(script: str, token: str) -> str:
    at = script.rindex(token)
    line = script.count("\n", 0, at) + 1
    column = at - (script.rfind("\n", 0, at) + 1) + 1
    return f"(line {line}, column {column})"


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize(("script", "token", "kind"), CASES)
def test_an_error_is_one_line_with_its_position_in_the_script(way, script, token, kind):
    with pytest.raises(QueryError) as raised:
        WAYS[way](duckdb.connect(), script)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(kind), message
    assert message.endswith(_position(script, token)), message


@pytest.mark.parametrize("way", WAYS)
def test_an_error_without_a_position_keeps_duckdbs_words(way):
    with pytest.raises(QueryError) as raised:
        WAYS[way](duckdb.connect(), "SELECT 1 WHERE\n  error('boom ' || 1)")
    assert str(raised.value) == "Invalid Input Error: boom 1"
