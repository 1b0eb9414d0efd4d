"""The app never writes: every file of the lake is the same after a round of requests,
refused writes and errors included."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote


def _snapshot(root: Path) -> dict[str, tuple]:
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            found[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return found


def test_requests_leave_the_lake_as_it_was(lake_copy, tmp_path):
    from starlette.testclient import TestClient

    from nightlake import Lake
    from nightlake.detrends.sync import sync
    from nightlake.web.app import create_app

    from .test_detrends import FIXTURE_DB

    db = tmp_path / "detrends.db"
    db.write_bytes(FIXTURE_DB.read_bytes())
    sync(Lake(lake_copy), db)
    before, db_before = _snapshot(lake_copy), db.stat().st_mtime_ns
    target = tmp_path / "written.csv"
    urls = [
        "/",
        "/night/20190402?cols=visit,band&f.detector=5",
        "/night/19990101",
        "/detrends",
        "/sql?q=SELECT+count(*)+FROM+images",
        f"/sql?q=COPY+images+TO+'{lake_copy}/images/x.parquet'",
        f"/sql.csv?q=COPY+(SELECT+1)+TO+'{target}'",
        "/sql?q=CREATE+TABLE+t+AS+SELECT+1;+SELECT+*+FROM+t",
        "/sql.parquet?q=SELECT+*+FROM+detrends",
        "/static/charts.js",
        # SQL given as a value, bound again when it runs (found in review: it planted files)
        "/sql?q="
        + quote(
            "CREATE TEMP SEQUENCE s; SELECT * FROM query(CASE WHEN nextval('s') = 1 THEN "
            "'SELECT 1' ELSE 'SELECT * FROM json_execute_serialized_sql(json_serialize_sql("
            f"''WITH x AS (COPY (SELECT 1) TO {lake_copy}/images/p.csv) FROM x''))' END)"
        ),
    ]
    with TestClient(create_app(lake_copy)) as client:
        for url in urls:
            client.get(url)
        client.post("/sql?q=SELECT+1")
    assert _snapshot(lake_copy) == before
    assert db.stat().st_mtime_ns == db_before
    assert not target.exists()
