"""resolve_detrends reads only the image columns a query uses (EXPLAIN shows the scans)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nightlake import Lake
from nightlake.detrends.sync import sync

from .conftest import T0, VR, record, utc, write_detreg

TYPES = ["bias", "dark", "flat", "fringe", "mask"]


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    """Three images with a wide ``wcs`` column, and one record of every type."""
    root = tmp_path_factory.mktemp("projection")
    rows = {
        "visit": [1, 2, 3],
        "detector": [5, 5, 6],
        "filter": [VR, VR, VR],
        "band": ["VR"] * 3,
        "exposureTime": [60.0, 300.0, 300.0],
        "obs_time": [utc(T0 + 100), utc(T0 + 200), utc(T0 + 300)],
        "wcs": ['{"CD1_1": 7.3e-05}' * 100] * 3,
        "psfSigma": [2.0, 2.5, 3.0],
    }
    out = root / "lake" / "images" / "target=A0a" / "night=20190402" / "20190402_A0a.parquet"
    out.parent.mkdir(parents=True)
    pq.write_table(pa.table(rows), out)
    db = write_detreg(
        root / "detrend.db",
        [record(kind, ccd, 1, 0, None, T0, f"{kind}-{ccd}") for kind in TYPES for ccd in (5, 6)],
    )
    lake = Lake(root / "lake")
    sync(lake, db)
    return lake


def plan(lake: Lake, query: str) -> str:
    con = lake.connect()
    try:
        return con.execute("EXPLAIN " + query).fetchall()[0][1]
    finally:
        con.close()


@pytest.mark.parametrize("mode", ["exact", "recent"])
@pytest.mark.parametrize("kind", TYPES)
def test_count_star_reads_no_unused_image_column(lake, kind, mode):
    query = f"SELECT count(*) FROM resolve_detrends('{kind}', mode := '{mode}')"
    text = plan(lake, query)
    assert "wcs" not in text and "psfSigma" not in text, text
    assert lake.sql(query).column(0).to_pylist() == [3]


@pytest.mark.parametrize("kind", TYPES)
def test_a_few_columns_read_only_those(lake, kind):
    query = f"SELECT visit, detrend_filename FROM resolve_detrends('{kind}')"
    assert "wcs" not in plan(lake, query)
    assert lake.sql(query).num_rows == 3


def test_a_selected_column_is_read(lake):
    """The check above can see a scanned column: selecting wcs puts it in the plan."""
    assert "wcs" in plan(lake, "SELECT wcs FROM resolve_detrends('flat')")
