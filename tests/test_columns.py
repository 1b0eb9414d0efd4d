"""The one duplicate-column-name rule (nightlake.columns), held to DuckDB's own and used by
every output that needs unique names."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from nightlake.columns import unique_names

NIGHTLAKE = Path(sys.executable).with_name("nightlake")
PREVIOUS_LAKE = Path(__file__).parent.parent / "data" / "fixtures" / "previous" / "lake"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "A", "a_1", "A_1", "a_2", "a_1_1", "b"]), min_size=1, max_size=8)
)
def test_the_rule_is_duckdbs_for_a_file_with_repeated_names(tmp_path_factory, names):
    path = tmp_path_factory.mktemp("dup") / "dup.parquet"
    pq.write_table(pa.table([[i] for i in range(len(names))], names=names), path)
    expected = duckdb.sql("SELECT * FROM read_parquet($p)", params={"p": str(path)}).columns
    assert unique_names(names) == expected


def test_a_name_taken_by_a_suffix_is_suffixed_again():
    assert unique_names(["a", "a_1", "a"]) == ["a", "a_1", "a_1_1"]
    assert unique_names(["x", "X", "x"]) == ["x", "X_1", "x_2"]


def _sql(lake: Path, fmt: str, query: str) -> str:
    done = subprocess.run(
        [str(NIGHTLAKE), "sql", "--lake", str(lake), "--format", fmt, query],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_json_keys_of_repeated_names_follow_the_rule(tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(PREVIOUS_LAKE, lake)
    query = "SELECT 1 AS a, 2 AS a_1, 3 AS a"
    assert json.loads(_sql(lake, "json", query)) == [{"a": 1, "a_1": 2, "a_1_1": 3}]
    assert json.loads(_sql(lake, "jsonl", query)) == {"a": 1, "a_1": 2, "a_1_1": 3}
