"""The Lake object: one cached connection that follows the lake on disk."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from nightlake import Lake
from nightlake.convert import convert

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"

COLLECTIONS = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "collections"


def _count(lake: Lake) -> int:
    return lake.sql("SELECT count(*) AS n FROM images").column("n")[0].as_py()


def test_repeated_queries_see_partitions_converted_in_between(tmp_path):
    files = sorted(COLLECTIONS.glob("*.collection"))
    lake = Lake(tmp_path / "lake")
    convert(lake, files[:1])
    first = _count(lake)
    assert lake._connection is not None  # the connection is kept …
    convert(lake, files[1:])
    assert _count(lake) > first  # … and rebuilt when the lake changed
    assert _count(lake) == _count(Lake(tmp_path / "lake"))


def test_threads_can_query_one_lake_at_once(tmp_path):
    lake = Lake(tmp_path / "lake")
    convert(lake, [COLLECTIONS])
    expected = _count(Lake(lake.path))
    results, errors = [], []

    def work():
        try:
            results.append(_count(lake))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [expected] * 8


def test_partition_statistics_skip_nan_floats_and_long_strings(tmp_path):
    """Min/max statistics where DuckDB can use them (detector, visit, mjd …); none for a float
    column holding NaN (DuckDB would fold isnan() to false) nor for long JSON strings."""
    import pyarrow.parquet as pq

    lake = Lake(tmp_path / "lake")
    convert(lake, [FIXTURES / "collections"])
    checked = 0
    for path in lake.image_files():
        table = pq.read_table(path)
        meta = pq.ParquetFile(path).metadata
        for i, name in enumerate(table.column_names):
            column = table.column(name)
            has_stats = meta.row_group(0).column(i).is_stats_set
            if name in ("wcs", "config"):
                assert not has_stats, (path, name)
            elif pa.types.is_floating(column.type) and pc.any(pc.is_nan(column)).as_py():
                assert not has_stats, (path, name)
            elif name in ("detector", "visit", "mjd", "band", "obs_time"):
                assert has_stats, (path, name)
                checked += 1
    assert checked >= 5 * len(lake.image_files())
