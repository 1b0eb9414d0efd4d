"""``nightlake sql``: query sources, parameters, every output format, errors, read-only."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nightlake import Lake

NIGHTLY = "SELECT night, target, count(*) AS n FROM images GROUP BY ALL ORDER BY night, target"
EXPECTED = [("20190402", "A0a", 6), ("20190402", "B1a", 1), ("20190403", "A0a", 2)]


def lake_files(lake: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(lake)): p.read_bytes() for p in sorted(lake.rglob("*")) if p.is_file()
    }


def test_default_output_in_a_pipe_is_csv(cli, hand_lake):
    result = cli("sql", "--lake", hand_lake, NIGHTLY)
    assert result.exit_code == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["night", "target", "n"]
    assert [(a, b, int(c)) for a, b, c in rows[1:]] == EXPECTED


def test_table_format_aligns_and_cuts_long_cells(cli, hand_lake):
    result = cli(
        "sql",
        "--lake",
        hand_lake,
        "--format",
        "table",
        "SELECT night, wcs FROM images ORDER BY night, detector LIMIT 2",
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split(" | ")[0].strip() == "night"
    assert set(lines[1]) <= {"-", "+"}
    assert lines[-1] == "(2 rows)"
    assert all(len(line) <= len("20190402") + 3 + 40 for line in lines[2:4])
    assert lines[2].endswith("…")


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl"])
def test_text_formats_round_trip(cli, hand_lake, fmt):
    result = cli("sql", "--lake", hand_lake, "--format", fmt, NIGHTLY)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    if fmt in ("csv", "tsv"):
        rows = list(csv.DictReader(io.StringIO(out), delimiter="," if fmt == "csv" else "\t"))
    elif fmt == "json":
        rows = json.loads(out)
    else:
        rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["night"], r["target"], int(r["n"])) for r in rows] == EXPECTED


def test_json_writes_nan_as_null_and_timestamps_as_iso(cli, hand_lake):
    result = cli(
        "sql",
        "--lake",
        hand_lake,
        "--format",
        "jsonl",
        "SELECT psfSigma, obs_time FROM images WHERE NOT isfinite(psfSigma)",
    )
    row = json.loads(result.stdout)
    assert row["psfSigma"] is None
    assert row["obs_time"].startswith("2019-04-03T")


def test_isfinite_finds_the_nan_of_parquet_columns(cli, hand_lake):
    result = cli(
        "sql", "--lake", hand_lake, "SELECT count(*) AS n FROM images WHERE NOT isfinite(psfSigma)"
    )
    assert result.stdout.splitlines() == ["n", "1"]


def test_isnan_finds_every_nan_of_a_converted_lake(cli, tmp_path, fixtures_dir):
    # Parquet min/max leave NaN out and DuckDB folds isnan() to false from them, so the
    # converter writes NaN-holding float columns without statistics (lake.statistics_columns).
    lake = tmp_path / "lake"
    assert cli("convert", fixtures_dir / "collections", "--lake", lake).exit_code == 0
    import numpy as np
    from astropy.table import Table, vstack

    source = vstack(
        [
            Table.read(p, format="ascii.ecsv")
            for p in sorted((fixtures_dir / "collections").glob("*.collection"))
        ]
    )
    expected = int(np.isnan(source["zeroPoint"]).sum())
    assert expected > 0
    result = cli(
        "sql",
        "--lake",
        lake,
        "--format",
        "csv",
        "SELECT count(*) AS n FROM images WHERE isnan(zeroPoint)",
    )
    assert result.stdout.splitlines() == ["n", str(expected)]


def test_csv_writes_nested_values_as_json(cli, hand_lake):
    result = cli(
        "sql", "--lake", hand_lake, "--format", "csv", "SELECT [1, 2] AS l, {'a': 'x'} AS s"
    )
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert json.loads(rows[0]["l"]) == [1, 2] and json.loads(rows[0]["s"]) == {"a": "x"}


@pytest.mark.parametrize("suffix", [".parquet", ".arrow", ".csv", ".json", ".jsonl", ".tsv"])
def test_output_file_format_from_extension(cli, hand_lake, tmp_path, suffix):
    out = tmp_path / "out" / f"result{suffix}"
    out.parent.mkdir()
    result = cli("sql", "--lake", hand_lake, "-o", out, NIGHTLY)
    assert result.exit_code == 0, result.stderr
    if suffix == ".parquet":
        table = pq.read_table(out)
    elif suffix == ".arrow":
        table = pa.ipc.open_file(out).read_all()
    else:
        table = None
    if table is not None:
        assert [tuple(r.values()) for r in table.to_pylist()] == EXPECTED
    else:
        assert "A0a" in out.read_text()
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary left


def test_arrow_on_stdout_is_an_ipc_stream(cli, hand_lake):
    result = cli("sql", "--lake", hand_lake, "--format", "arrow", NIGHTLY)
    assert result.exit_code == 0, result.stderr
    table = pa.ipc.open_stream(result.stdout_bytes).read_all()
    assert [tuple(r.values()) for r in table.to_pylist()] == EXPECTED


def test_parquet_on_stdout(cli, hand_lake):
    result = cli("sql", "--lake", hand_lake, "--format", "parquet", NIGHTLY)
    table = pq.read_table(pa.BufferReader(result.stdout_bytes))
    assert table.num_rows == 3


def test_query_from_file_and_from_stdin(cli, hand_lake, tmp_path):
    query_file = tmp_path / "q.sql"
    query_file.write_text("-- a comment\n" + NIGHTLY + ";\n")
    by_file = cli("sql", "--lake", hand_lake, "-f", query_file)
    by_stdin = cli("sql", "--lake", hand_lake, "-", input=NIGHTLY)
    by_stdin_file = cli("sql", "--lake", hand_lake, "-f", "-", input=NIGHTLY)
    direct = cli("sql", "--lake", hand_lake, NIGHTLY)
    assert by_file.exit_code == by_stdin.exit_code == by_stdin_file.exit_code == 0
    assert by_file.stdout == by_stdin.stdout == by_stdin_file.stdout == direct.stdout


def test_a_script_runs_every_statement_and_prints_the_last(cli, hand_lake):
    result = cli(
        "sql",
        "--lake",
        hand_lake,
        "--format",
        "csv",
        "CREATE TEMP TABLE t AS SELECT 41 AS x; SELECT x + 1 AS y FROM t",
    )
    assert result.stdout.splitlines() == ["y", "42"]


def test_parameters_are_bound_not_formatted(cli, hand_lake):
    result = cli(
        "sql",
        "--lake",
        hand_lake,
        "--format",
        "csv",
        "-p",
        "night=20190402",
        "-p",
        "det=3",
        "SELECT target, visit FROM images WHERE night = $night AND detector = $det ORDER BY visit",
    )
    assert result.exit_code == 0, result.stderr
    assert list(csv.reader(result.stdout.splitlines()[1:])) == [
        ["A0a", "101"],
        ["A0a", "102"],
        ["B1a", "301"],
    ]
    # a value that would be SQL if pasted into the text stays a value
    evil = cli(
        "sql",
        "--lake",
        hand_lake,
        "--format",
        "csv",
        "-p",
        "t=x' OR '1'='1",
        "SELECT count(*) AS n FROM images WHERE target = $t",
    )
    assert evil.stdout.splitlines() == ["n", "0"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["-p", "night"], "expected NAME=VALUE"),
        (["-p", "1x=2"], "expected NAME=VALUE"),
        (["-p", "night=1", "-p", "other=1"], "'other' is not used"),
        ([], "uses $night but no value"),
    ],
)
def test_bad_parameters(cli, hand_lake, args, message):
    result = cli("sql", "--lake", hand_lake, *args, "SELECT * FROM images WHERE night = $night")
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_sql_error_is_one_line_with_position_and_exit_2(cli, hand_lake):
    result = cli("sql", "--lake", hand_lake, "SELECT 1,\n  night,\n  nosuchcolumn FROM images")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].split(": error: ")[1].startswith("Binder Error:")
    assert "nosuchcolumn" in lines[0]
    assert "(line 3, column 3)" in lines[0]
    syntax = cli("sql", "--lake", hand_lake, "SELECT night FROM images WHER night = 1")
    assert syntax.exit_code == 2
    assert "(line 1, column 31)" in syntax.stderr  # 'night' after the misspelt WHERE


def test_long_lines_still_give_the_true_column(cli, hand_lake):
    query = "SELECT " + ", ".join(f"{i} AS c{i}" for i in range(80)) + ", CAST('a' AS INT)"
    result = cli("sql", "--lake", hand_lake, query)
    assert result.exit_code == 2
    assert f"(line 1, column {query.index('CAST') + 1})" in result.stderr


def test_runtime_error_midway_leaves_no_output_file(cli, hand_lake, tmp_path):
    out = tmp_path / "out" / "big.parquet"
    out.parent.mkdir()
    query = (
        "SELECT CASE WHEN x > 250000 THEN CAST('a' || x AS INT) ELSE x END AS v "
        "FROM range(300000) t(x)"
    )
    result = cli("sql", "--lake", hand_lake, "-o", out, query)
    assert result.exit_code == 2
    assert "Conversion Error" in result.stderr and str(out) not in result.stderr
    assert list(out.parent.iterdir()) == []


def test_debug_shows_the_traceback(cli, hand_lake, monkeypatch):
    monkeypatch.setenv("NIGHTLAKE_DEBUG", "0")  # --debug sets it for the process; restore after
    result = cli("--debug", "sql", "--lake", hand_lake, "SELEC 1")
    assert result.exit_code != 0
    assert result.exception is not None  # re-raised for the traceback


@pytest.mark.parametrize(
    "statement",
    [
        "COPY (SELECT 1) TO '{lake}/images/target=A0a/night=20190402/20190402_A0a.parquet'",
        "COPY images TO '{lake}/images/extra.parquet' (FORMAT parquet)",
        "EXPORT DATABASE '{lake}/images'",
        "ATTACH '{lake}/images/new.duckdb' AS x",
        "SET temp_directory = '{lake}/images'",
        "INSTALL httpfs",
    ],
)
def test_queries_cannot_modify_the_lake(cli, hand_lake, statement):
    before = lake_files(hand_lake)
    result = cli("sql", "--lake", hand_lake, "SELECT 1; " + statement.format(lake=hand_lake))
    assert result.exit_code == 2
    assert "read-only" in result.stderr
    assert lake_files(hand_lake) == before
    with pytest.raises(Exception, match="read-only"):
        Lake(hand_lake).sql(statement.format(lake=hand_lake))
    assert lake_files(hand_lake) == before


def test_output_into_the_lake_is_refused(cli, hand_lake):
    before = lake_files(hand_lake)
    result = cli(
        "sql",
        "--lake",
        hand_lake,
        "-o",
        hand_lake / "images" / "extra.parquet",
        "SELECT * FROM images",
    )
    assert result.exit_code == 2 and "refusing to write into the lake" in result.stderr
    assert lake_files(hand_lake) == before


def test_reading_your_own_files_and_temp_tables_is_allowed(cli, hand_lake, tmp_path):
    targets = tmp_path / "targets.csv"
    targets.write_text("target,priority\nA0a,1\n")
    result = cli(
        "sql",
        "--lake",
        hand_lake,
        "--format",
        "csv",
        f"SELECT count(*) AS n FROM images JOIN '{targets}' USING (target)",
    )
    assert result.stdout.splitlines() == ["n", "8"]
    attach = cli("sql", "--lake", hand_lake, f"ATTACH '{tmp_path}/none.duckdb' AS x")
    assert attach.exit_code == 2  # writable attach refused
    memory = cli(
        "sql",
        "--lake",
        hand_lake,
        "--format",
        "csv",
        "ATTACH ':memory:' AS scratch; CREATE TABLE scratch.t AS SELECT 7 AS x; "
        "SELECT x FROM scratch.t",
    )
    assert memory.stdout.splitlines() == ["x", "7"]


def test_lake_from_environment_then_default(cli, hand_lake, monkeypatch, tmp_path):
    monkeypatch.setenv("NIGHTLAKE_LAKE", str(hand_lake))
    assert cli("sql", "SELECT count(*) AS n FROM images").stdout.splitlines() == ["n", "9"]
    monkeypatch.delenv("NIGHTLAKE_LAKE")
    monkeypatch.chdir(hand_lake.parent)  # the lake is ./lake
    assert cli("sql", "SELECT count(*) AS n FROM images").stdout.splitlines() == ["n", "9"]
    monkeypatch.chdir(tmp_path / "lake" / "images")
    missing = cli("sql", "SELECT 1")
    assert missing.exit_code == 1 and "no lake here" in missing.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "xml"], "unknown format 'xml'"),
        (["-o", "result.xyz"], "cannot tell the format"),
    ],
)
def test_bad_output_options(cli, hand_lake, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = cli("sql", "--lake", hand_lake, *args, "SELECT 1")
    assert result.exit_code == 2 and message in result.stderr
    assert not (tmp_path / "result.xyz").exists()


def test_no_query_and_two_queries(cli, hand_lake, tmp_path):
    assert "no query" in cli("sql", "--lake", hand_lake).stderr
    q = tmp_path / "q.sql"
    q.write_text("SELECT 1")
    assert "not both" in cli("sql", "--lake", hand_lake, "-f", q, "SELECT 2").stderr


def test_console_script_streams_a_large_export(hand_lake, tmp_path):
    # A real process, a million rows through the Arrow stream into Parquet.
    out = tmp_path / "million.parquet"
    exe = Path(sys.executable).with_name("nightlake")
    proc = subprocess.run(
        [
            str(exe),
            "sql",
            "--lake",
            str(hand_lake),
            "-o",
            str(out),
            "SELECT x, x * 2 AS y FROM range(1000000) t(x)",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "NIGHTLAKE_DEBUG": ""},
    )
    assert proc.returncode == 0, proc.stderr
    meta = pq.read_metadata(out)
    assert meta.num_rows == 1_000_000
    assert meta.num_row_groups >= 1
    head = subprocess.run(
        f"'{exe}' sql --lake '{hand_lake}' --format csv 'SELECT * FROM range(2000000)' | head -3",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert head.stdout.splitlines() == ["range", "0", "1"]
    assert "Error" not in head.stderr


def test_a_script_with_parameters_in_several_statements(cli, hand_lake):
    result = cli(
        "sql",
        "--lake",
        hand_lake,
        "--format",
        "csv",
        "-p",
        "d=3",
        "-p",
        "n=20190402",
        "CREATE TEMP TABLE pick AS SELECT * FROM images WHERE detector = $d;\n"
        "SELECT count(*) AS k FROM pick WHERE night = $n",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["k", "3"]


def test_error_in_a_later_statement_points_into_the_script(cli, hand_lake):
    result = cli("sql", "--lake", hand_lake, "SELECT 1;\nSELECT 2,\n   nosuch FROM images")
    assert result.exit_code == 2
    assert "(line 3, column 4)" in result.stderr
    first = cli(
        "sql", "--lake", hand_lake, "CREATE TEMP TABLE t AS SELECT nosuch FROM images; SELECT 1"
    )
    assert "(line 1, column 31)" in first.stderr


def test_only_comments_is_an_empty_result(cli, hand_lake):
    result = cli("sql", "--lake", hand_lake, "--format", "csv", "/* nothing to do */")
    assert result.exit_code == 0 and result.stdout.strip() == ""


def test_missing_query_file(cli, hand_lake, tmp_path):
    result = cli("sql", "--lake", hand_lake, "-f", tmp_path / "nope.sql")
    assert result.exit_code == 1
    assert "nope.sql" in result.stderr and "No such file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_output_into_a_missing_directory(cli, hand_lake, tmp_path):
    result = cli("sql", "--lake", hand_lake, "-o", tmp_path / "no" / "r.csv", "SELECT 1")
    assert result.exit_code == 2
    assert "r.csv" in result.stderr and "does not exist" in result.stderr
    assert not (tmp_path / "no").exists()
