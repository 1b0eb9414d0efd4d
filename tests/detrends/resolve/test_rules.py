"""Hand-checked cases of each rule, run through the reference and both SQL macros.

The property test compares implementations on random data; these pin the rules themselves
(ties, half-open ranges, the dark tie-break) to answers worked out by hand.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from nightlake import Lake
from nightlake.detrends.detreg import read_db
from nightlake.detrends.rules import Image, Resolver
from nightlake.detrends.sync import sync

from .conftest import T0, VR, utc, write_detreg, write_images
from .conftest import record as rec

RECORDS = [
    rec("flat", 5, 1, -1000, 1000, 10, "flat0"),  # 0 physical filter name
    rec("flat", 5, 2, -500, None, 10, "flat1"),  # 1 band name, open-ended, same treg as 0
    rec("flat", 5, 1, -5000, -2000, 50, "flat2"),  # 2
    rec("flat", 5, 1, -5000, -2000, 50, "flat3"),  # 3 same tstop and treg as 2
    rec("flat", 5, 1, 100, 200, 99, "flat4"),  # 4 starts after T0
    rec("dark", 5, 60, -100, 100, 1, "dark60"),  # 5
    rec("dark", 5, 300, -100, 100, 1, "dark300"),  # 6
    rec("dark", 5, 300, -3000, -2000, 1, "dark300old"),  # 7
    rec("bias", 5, -1, -10, -5, 1, "bias0"),  # 8
    rec("flat", 5, 4, -1000, 1000, 100, "flat_r"),  # 9 other filter
    rec("flat", 6, 1, -1000, 1000, 100, "flat_ccd6"),  # 10 other CCD
    rec("flat", 5, 1, 500, 400, 1000, "flat_empty"),  # 11 empty range
]

# (type, mode, seconds after T0, image exptime) -> (index, rule, scale) or None
CASES = [
    ("flat", "exact", 0, 60.0, (1, "exact", None)),  # equal treg: the later record
    ("flat", "exact", -1500, 60.0, None),  # nothing covers
    ("flat", "recent", -1500, 60.0, (3, "recent", None)),  # tstop and treg tie: later record
    ("flat", "exact", 150, 60.0, (4, "exact", None)),  # latest treg among three
    ("flat", "recent", -6000, 60.0, None),  # nothing has ended yet
    ("flat", "exact", 1000, 60.0, (1, "exact", None)),  # [tstart, tstop): 0 has ended
    ("flat", "recent", 450, 60.0, (1, "exact", None)),  # the empty range is never chosen
    ("dark", "exact", 0, 180.0, (6, "exact", 0.6)),  # 60 and 300 equally near: longer
    ("dark", "exact", 0, 100.0, (5, "exact", 100 / 60)),  # nearest exposure time
    ("dark", "exact", -1500, 180.0, None),
    ("dark", "recent", -1500, 180.0, (7, "recent", 0.6)),  # 60 s has no candidate then
    ("bias", "exact", 0, 60.0, None),
    ("bias", "recent", 0, 60.0, (8, "recent", None)),
    ("bias", "exact", -7, 60.0, (8, "exact", None)),
    ("mask", "recent", 0, 60.0, None),
]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rules")
    db_path = write_detreg(tmp / "detrend.db", RECORDS)
    rows = [
        dict(
            visit=i,
            detector=5,
            filter=VR,
            band="VR",
            exposureTime=exptime,
            obs_time=utc(T0 + offset),
        )
        for i, (_, _, offset, exptime, _) in enumerate(CASES)
    ]
    write_images(tmp / "lake", rows)
    lake = Lake(tmp / "lake")
    sync(lake, db_path)
    db = read_db(db_path)
    con = lake.connect()
    yield Resolver(db.records, db.filters), con
    con.close()


@pytest.mark.parametrize("case", range(len(CASES)))
def test_each_implementation_gives_the_hand_checked_answer(scenario, case):
    resolver, con = scenario
    kind, mode, offset, exptime, expected = CASES[case]
    image = Image(5, (T0 + offset) * 1_000_000, VR, "VR", exptime)
    choice = resolver.choose(kind, image, mode)
    assert (None if choice is None else (choice.index, choice.rule, choice.scale)) == expected

    row = con.sql(
        "SELECT detrend_index, detrend_rule, detrend_scale FROM resolve_detrends($t, "
        "mode := $m) WHERE visit = $v",
        params={"t": kind, "m": mode, "v": case},
    ).fetchall()[0]
    assert (None if row[0] is None else row) == expected

    single = con.sql(
        "SELECT detrend_for($t, 5, $f, $time, mode := $m, exptime := $e, band := 'VR')",
        params={"t": kind, "f": VR, "time": utc(T0 + offset), "m": mode, "e": exptime},
    ).fetchall()[0][0]
    got = None if single is None else (single["record_index"], single["rule"], single["scale"])
    assert got == expected


def test_microseconds_before_a_boundary_count(scenario):
    resolver, con = scenario
    just_before = utc(T0 - 1000) - timedelta(microseconds=1)
    single = con.sql("SELECT detrend_for('flat', 5, $f, $t)", params={"f": VR, "t": just_before})
    assert single.fetchall()[0][0] is None
    image = Image(5, (T0 - 1000) * 1_000_000 - 1, VR, "VR")
    assert resolver.choose("flat", image) is None


def test_plan_is_one_asof_join_over_the_images(scenario):
    _, con = scenario
    # Below 64 image rows DuckDB runs an ASOF join as a nested loop; the bench-sized plan is
    # the ASOF one, which this threshold shows on the small fixture.
    con.execute("SET asof_loop_join_threshold = 0")
    plan = "\n".join(
        r[1] for r in con.sql("EXPLAIN SELECT * FROM resolve_detrends('flat')").fetchall()
    )
    con.execute("RESET asof_loop_join_threshold")
    assert plan.count("Asof Join") == 1
    assert "Nested Loop" not in plan and "CROSS_PRODUCT" not in plan


def test_source_names_another_view_of_images(scenario):
    _, con = scenario
    con.execute("CREATE OR REPLACE TEMP VIEW first_three AS SELECT * FROM images WHERE visit < 3")
    rows = con.sql(
        "SELECT visit, detrend_index FROM resolve_detrends('flat', "
        "source := 'first_three') ORDER BY visit"
    ).fetchall()
    assert rows == [(0, 1), (1, None), (2, None)]


def test_macros_load_on_a_bare_connection_and_fail_only_when_called():
    import duckdb

    from nightlake.sql import load_macros

    con = duckdb.connect()
    load_macros(con)
    with pytest.raises(duckdb.CatalogException, match="images"):
        con.sql("SELECT * FROM resolve_detrends('flat')").fetchall()


def test_the_reference_uses_the_database_format_codes():
    # one definition, in detreg/record.py (light enough for detsearch's start-up)
    from nightlake.detrends import detreg
    from nightlake.detrends import rules as resolve
    from nightlake.detrends.detreg import format, record

    assert format.TYPE_CODES is record.TYPE_CODES is detreg.TYPE_CODES
    assert resolve.DETREND_TYPES == tuple(detreg.TYPE_CODES)
    assert resolve.OPEN_ENDED == detreg.OPEN_ENDED
