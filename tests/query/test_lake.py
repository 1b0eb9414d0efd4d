"""The query face of the lake: ``from nightlake import Lake``, one cached connection that
follows the lake on disk."""

from __future__ import annotations

import threading
from pathlib import Path

import nightlake
from nightlake import Lake
from nightlake.ingest.convert import convert
from nightlake.lake import LakeDirectory
from nightlake.query import lake as query_lake

COLLECTIONS = Path(__file__).resolve().parents[2] / "data" / "fixtures" / "collections"


def test_the_front_door_hands_out_the_query_layers_lake(tmp_path):
    """``nightlake.Lake`` is the lake directory with the query face; the directory alone,
    what the writers take, has none."""
    assert nightlake.Lake is query_lake.Lake
    assert issubclass(Lake, LakeDirectory)
    assert repr(Lake(tmp_path)) == f"Lake({str(tmp_path)!r})"
    assert repr(LakeDirectory(tmp_path)) == f"LakeDirectory({str(tmp_path)!r})"
    for method in ("sql", "table", "connect", "cursor", "view_sql", "disk_state"):
        assert callable(getattr(Lake, method)) and not hasattr(LakeDirectory, method)


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
