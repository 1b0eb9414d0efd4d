"""The lake without nightlake: init-sql in a bare DuckDB, and pyarrow.dataset on the files."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from nightlake import Lake

QUERIES = [
    "SELECT * FROM nightly_stats()",
    "SELECT * FROM detector_stats()",
    "SELECT * FROM survey_stats()",
    "SELECT night, target, median(fwhm_arcsec(psfSigma)) AS f FROM images "
    "GROUP BY ALL ORDER BY ALL",
]


@pytest.mark.parametrize("query", QUERIES)
def test_init_sql_in_a_bare_duckdb_gives_the_same_answers(cli, hand_lake, query):
    script = cli("init-sql", "--lake", hand_lake)
    assert script.exit_code == 0, script.stderr
    con = duckdb.connect()
    con.execute(script.stdout)
    bare = json.loads(json.dumps(con.sql(query).to_arrow_table().to_pylist(), default=str))
    ours = json.loads(cli("sql", "--lake", hand_lake, "--format", "json", query).stdout)
    # nightlake's JSON writes timestamps in ISO form; compare on the same footing
    for row in bare:
        for k, v in row.items():
            if isinstance(v, str) and len(v) > 19 and v[10] == " ":
                row[k] = v.replace(" ", "T", 1)
    assert bare == ours


def test_init_sql_runs_in_a_fresh_python_without_nightlake(cli, hand_lake, tmp_path):
    init = tmp_path / "init.sql"
    init.write_text(cli("init-sql", "--lake", hand_lake).stdout)
    code = (
        "import duckdb, sys; sys.modules['nightlake'] = None; con = duckdb.connect(); "
        f"con.execute(open({str(init)!r}).read()); "
        "print(con.sql('SELECT images FROM survey_stats()').fetchall()[0][0])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "9"


def test_pyarrow_dataset_reads_the_lake(hand_lake):
    # partition values are labels, not numbers: declare them as strings (pyarrow would guess int)
    partitioning = ds.partitioning(
        pa.schema([("target", pa.string()), ("night", pa.string())]), flavor="hive"
    )
    dataset = ds.dataset(hand_lake / "images", format="parquet", partitioning=partitioning)
    table = dataset.to_table()
    assert table.num_rows == Lake(hand_lake).sql("SELECT count(*) n FROM images")["n"][0].as_py()
    # per-night medians of zero point computed with numpy from pyarrow's reading
    nightly = {
        (r["target"], r["night"]): r["zero_point_median"]
        for r in Lake(hand_lake).sql("SELECT * FROM nightly_stats()").to_pylist()
    }
    for target, night in nightly:
        mask = pc.and_(pc.equal(table["fieldname"], target), pc.equal(table["night"], night))
        zp = table.filter(mask)["zeroPoint"].to_numpy(zero_copy_only=False)
        zp = zp[np.isfinite(zp.astype(float))]
        assert float(np.median(zp)) == pytest.approx(nightly[(target, night)])


def test_polars_reads_the_lake(hand_lake):
    pl = pytest.importorskip("polars")
    frame = pl.read_parquet(str(hand_lake / "images" / "**" / "*.parquet"), hive_partitioning=True)
    assert frame.height == 9
    per_night = (
        frame.filter(pl.col("zeroPoint").is_not_nan())
        .group_by("night")
        .agg(pl.col("zeroPoint").median())
        .sort("night")
    )
    expected = Lake(hand_lake).sql(
        "SELECT night, median(finite_or_null(zeroPoint)) AS zp FROM images "
        "GROUP BY night ORDER BY night"
    )
    assert per_night["zeroPoint"].to_list() == pytest.approx(expected["zp"].to_pylist())
