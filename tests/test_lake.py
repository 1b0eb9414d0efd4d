"""The Lake object: one cached connection that follows the lake on disk."""

from __future__ import annotations

import threading
from pathlib import Path

from nightlake import Lake
from nightlake.convert import convert

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
