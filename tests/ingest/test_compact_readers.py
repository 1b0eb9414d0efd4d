"""A compacted lake as outside readers and the planner see it: the same rows through DuckDB,
pyarrow.dataset, polars and init-sql; one-night and one-target queries read only their part;
the one-file-per-detector layout compacts the same way."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from nightlake import Lake
from nightlake.ingest import compact as compact_module
from nightlake.ingest.compact import compact
from nightlake.ingest.convert import ConvertOptions, convert
from nightlake.lake import is_year_file
from nightlake.query.info import lake_info
from nightlake.query.stream import init_script

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"
COLLECTIONS = sorted((FIXTURES / "collections").glob("*.collection"))
KEYS = "SELECT target, night, CAST(detector AS VARCHAR) d, visit FROM {src} ORDER BY ALL"


def keys(rows) -> list[tuple]:
    return sorted((str(t), str(n), str(d), int(v)) for t, n, d, v in rows)


@pytest.fixture(scope="module")
def compacted(tmp_path_factory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("compacted") / "lake")
    convert(lake, COLLECTIONS)
    compact(lake)
    return lake


def test_every_client_reads_the_same_rows_from_a_compacted_lake(compacted):
    images = compacted.images_dir
    ours = keys(tuple(r.values()) for r in compacted.sql(KEYS.format(src="images")).to_pylist())
    assert ours and all("year=" in str(p) for p in compacted.image_files())
    # DuckDB on the raw glob: the file holds night, the path target and year
    glob = str(images / "**" / "*.parquet")
    raw = duckdb.sql(
        KEYS.format(src=f"read_parquet('{glob}', hive_partitioning = true)")
    ).fetchall()
    assert keys(raw) == ours
    # init-sql in a bare DuckDB
    con = duckdb.connect()
    con.execute(init_script(compacted))
    assert keys(con.sql(KEYS.format(src="images")).fetchall()) == ours
    # pyarrow.dataset with the Hive path
    partitioning = ds.partitioning(
        pa.schema([("target", pa.string()), ("year", pa.string())]), flavor="hive"
    )
    table = ds.dataset(images, format="parquet", partitioning=partitioning).to_table()
    cols = [table[c].to_pylist() for c in ("target", "night", "detector", "visit")]
    assert keys(zip(*cols)) == ours
    # polars
    pl = pytest.importorskip("polars")
    frame = pl.read_parquet(glob, hive_partitioning=True)
    assert keys(frame.select("target", "night", "detector", "visit").rows()) == ours


def plan(lake: Lake, query: str) -> str:
    """EXPLAIN ANALYZE of ``query`` on a nightlake connection (the scan's counts of files and
    row groups read are in it)."""
    con = lake.connect()
    try:
        return "\n".join(row[1] for row in con.execute(f"EXPLAIN ANALYZE {query}").fetchall())
    finally:
        con.close()


def scanned(text: str, what: str) -> tuple[int, int]:
    found = re.search(what + r": (\d+) ?/ ?(\d+)", text)
    assert found, text
    return int(found[1]), int(found[2])


def test_a_one_night_query_reads_only_that_nights_row_groups(tmp_path, monkeypatch):
    # small row groups, so the fixtures' nights span several and pruning inside a file shows
    monkeypatch.setattr(compact_module, "ROW_GROUP_ROWS", 4)
    lake = Lake(tmp_path / "lake")
    convert(lake, COLLECTIONS)
    compact(lake)
    night = "20190402"
    rows = lake.sql(f"SELECT count(*) n FROM images WHERE night = '{night}'")["n"][0].as_py()
    read, total = scanned(
        plan(lake, f"SELECT sum(visit) FROM images WHERE night = '{night}'"), "Row Groups Scanned"
    )
    # sorted by night: its rows sit in ceil(rows / 4) row groups, plus at most one shared
    # at each end per file holding the night (two targets observed it)
    assert read <= -(-rows // 4) + 4 and total > 3 * read


def test_a_one_target_query_reads_only_that_targets_row_groups(tmp_path, monkeypatch):
    # year files, target a sorted column: row-group statistics skip the other targets
    monkeypatch.setattr(compact_module, "ROW_GROUP_ROWS", 4)
    lake = Lake(tmp_path / "lake")
    convert(lake, COLLECTIONS)
    compact(lake)
    assert all(is_year_file(f, lake.images_dir) for f in lake.image_files())
    query = "FROM images WHERE target = 'A0a'"
    rows = lake.sql(f"SELECT count(*) n {query}")["n"][0].as_py()
    read, total = scanned(plan(lake, f"SELECT sum(visit) {query}"), "Row Groups Scanned")
    # its rows sit in ceil(rows / 4) row groups, plus at most one shared at each end
    assert read <= -(-rows // 4) + 2 and total > 3 * read


def test_a_one_target_query_reads_only_its_parts(tmp_path, monkeypatch):
    # years cut into parts of at most PART_ROWS rows: the other parts' statistics
    # exclude the target
    monkeypatch.setattr(compact_module, "PART_ROWS", 30)
    lake = Lake(tmp_path / "lake")
    convert(lake, COLLECTIONS)
    compact(lake)
    files = lake.image_files()
    assert len(files) > 4 and all(is_year_file(f, lake.images_dir) for f in files)
    holding = [f for f in files if "A0a" in {r["target"] for r in footer_records(f)}]
    text = plan(lake, "SELECT count(*), sum(visit) FROM images WHERE target = 'A0a'")
    assert scanned(text, "Row Groups Scanned") == (len(holding), len(files))


def footer_records(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    meta = json.loads(pq.read_schema(path).metadata[b"nightlake"])
    return compact_module.unpacked_records(meta)


def test_the_detector_layout_compacts_with_the_same_rows_and_partitions(tmp_path):
    plain, lake = Lake(tmp_path / "plain"), Lake(tmp_path / "lake")
    options = ConvertOptions(partition_by=("target", "night", "detector"))
    for each in (plain, lake):
        convert(each, COLLECTIONS[:4], options)
    compact(lake)
    assert all("year=" in str(p) for p in lake.image_files())
    query = KEYS.format(src="images")
    assert lake.sql(query).equals(plain.sql(query))
    info = [(p.keys, p.rows, p.stale) for p in lake_info(lake).partitions]
    assert info == [(p.keys, p.rows, p.stale) for p in lake_info(plain).partitions]
    # a later convert rewrites only the target-years it touched, per detector still
    for each in (plain, lake):
        convert(each, COLLECTIONS, options)
    assert all("year=" in str(p) for p in lake.image_files())
    assert Lake(lake.path).sql(query).equals(Lake(plain.path).sql(query))
    one = "SELECT count(*) n FROM images WHERE night = '20190402' AND detector = '3'"
    assert Lake(lake.path).sql(one).equals(Lake(plain.path).sql(one))


@pytest.mark.parametrize("levels", [("target", "night"), ("target", "night", "detector")])
@pytest.mark.parametrize("part_rows", [10**6, 1, 30], ids=["one part", "per target", "parts"])
def test_compacting_keeps_the_views_columns_in_place(tmp_path, monkeypatch, levels, part_rows):
    """Positional set operations (EXCEPT ALL, UNION ALL) between a plain and a compacted
    lake match row for row: the columns keep their names, types and places, whether a year
    is one part, a part per target or a few."""
    monkeypatch.setattr(compact_module, "PART_ROWS", part_rows)
    plain, lake = Lake(tmp_path / "plain"), Lake(tmp_path / "lake")
    for each in (plain, lake):
        convert(each, COLLECTIONS[:4], ConvertOptions(partition_by=levels))
    compact(lake)
    con = duckdb.connect()
    for name, each in (("plain", plain), ("compacted", lake)):
        con.execute(f"CREATE VIEW {name} AS {each.view_sql().split(' AS ', 1)[1].split(';')[0]}")
    assert con.sql("DESCRIBE plain").fetchall() == con.sql("DESCRIBE compacted").fetchall()
    differ = "SELECT count(*) FROM (SELECT * FROM {} EXCEPT ALL SELECT * FROM {})"
    assert con.sql(differ.format("plain", "compacted")).fetchall() == [(0,)]
    assert con.sql(differ.format("compacted", "plain")).fetchall() == [(0,)]


def test_the_detectors_of_a_night_share_one_stored_record(tmp_path):
    """Stored whole, the per-detector records (alike but for detector and rows) made each
    footer of a compacted survey megabytes that every query parsed."""
    import pyarrow.parquet as pq

    lake = Lake(tmp_path / "lake")
    convert(lake, COLLECTIONS[:3], ConvertOptions(partition_by=("target", "night", "detector")))
    compact(lake)
    for file in lake.image_files():
        meta = json.loads(pq.read_schema(file).metadata[b"nightlake"])
        nights = {(r["target"], r["night"]) for r in meta["partitions"]}
        assert len(meta["partitions"]) > len(nights) == len(meta["shared"])
        assert all(
            set(r) <= {"target", "night", "detector", "rows", "shared"} for r in meta["partitions"]
        )


def test_records_stored_whole_by_the_first_compacted_files_still_read():
    whole = {"target": "A0a", "night": "20190401", "rows": 3, "sources": [], "options": {}}
    assert compact_module.unpacked_records({"partitions": [whole]}) == [whole]
    packed = compact_module._packed([whole])
    assert compact_module.unpacked_records(packed) == [whole]
