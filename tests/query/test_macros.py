"""The statistics macros against hand-checked values and against numpy."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nightlake import Lake
from nightlake.sql import load_macros

from .conftest import FWHM_PER_SIGMA, deep_row, write_lake

F = FWHM_PER_SIGMA


def rows_by(table, *keys):
    return {tuple(r[k] for k in keys): r for r in table.to_pylist()}


def test_nightly_stats_hand_checked(hand_lake):
    got = rows_by(Lake(hand_lake).sql("SELECT * FROM nightly_stats()"), "target", "night")
    assert list(got) == [("A0a", "20190402"), ("B1a", "20190402"), ("A0a", "20190403")]
    a = got[("A0a", "20190402")]
    # sigmas 1,2,3,4,6 (one NaN): median 3, p10 = 1 + 0.4*(2-1), p90 = 4 + 0.6*(6-4)
    assert (a["images"], a["visits"], a["detectors"]) == (6, 2, 3)
    assert a["exposure_s"] == 120 + 240  # once per visit, not once per detector
    assert a["fwhm_median_arcsec"] == pytest.approx(3 * F)
    assert a["fwhm_p10_arcsec"] == pytest.approx(1.4 * F)
    assert a["fwhm_p90_arcsec"] == pytest.approx(5.2 * F)
    assert a["zero_point_median"] == pytest.approx(31.5)  # 30,31,32,33 (NaN and NULL skipped)
    assert a["dimm_seeing_median_arcsec"] == pytest.approx(1.0)  # 0.8,1.0,1.2 (0.0 skipped)
    assert (a["airmass_min"], a["airmass_max"]) == pytest.approx((1.1, 1.2))
    assert a["first_obs_time"] < a["last_obs_time"]
    b = got[("A0a", "20190403")]
    assert b["fwhm_median_arcsec"] == pytest.approx(3 * F)
    assert b["zero_point_median"] == pytest.approx(31.0)
    assert (b["airmass_min"], b["airmass_max"]) == pytest.approx((1.2, 1.2))  # NaN skipped
    c = got[("B1a", "20190402")]
    assert (c["images"], c["exposure_s"], c["zero_point_median"]) == (1, 300.0, 29.0)


def test_detector_stats_hand_checked(hand_lake):
    got = rows_by(Lake(hand_lake).sql("SELECT * FROM detector_stats()"), "detector")
    assert list(got) == [(1,), (2,), (3,)]
    assert got[(1,)]["fwhm_median_arcsec"] == pytest.approx(2 * F)  # 1, 4, 2
    assert got[(1,)]["zero_point_median"] == pytest.approx(30.5)  # 30, 32, 30.5
    assert got[(2,)]["fwhm_median_arcsec"] == pytest.approx(3 * F)  # 2, NaN, 4
    assert got[(3,)]["zero_point_median"] == pytest.approx(29.0)  # NaN, NULL, 29
    assert (got[(3,)]["targets"], got[(3,)]["nights"], got[(3,)]["exposure_s"]) == (2, 1, 660.0)


def test_target_and_survey_stats_hand_checked(hand_lake):
    lake = Lake(hand_lake)
    targets = rows_by(lake.sql("SELECT * FROM target_stats()"), "target")
    assert targets[("A0a",)]["nights"] == 2
    assert targets[("A0a",)]["visits"] == 3
    assert targets[("A0a",)]["exposure_s"] == 480.0
    assert targets[("A0a",)]["zero_point_median"] == pytest.approx(31.25)  # 30,30.5,31,31.5,32,33
    (survey,) = lake.sql("SELECT * FROM survey_stats()").to_pylist()
    assert (survey["targets"], survey["nights"], survey["images"], survey["visits"]) == (2, 2, 9, 4)
    assert survey["exposure_s"] == 780.0
    assert survey["fwhm_median_arcsec"] == pytest.approx(3 * F)  # 1,2,2,3,3,4,4,6
    assert survey["zero_point_median"] == pytest.approx(31.0)
    assert (survey["first_night"], survey["last_night"]) == ("20190402", "20190403")


def test_visit_exposure_counts_each_visit_once(hand_lake):
    lake = Lake(hand_lake)
    visits = lake.sql("SELECT * FROM visit_exposure() ORDER BY night, target, visit").to_pylist()
    assert len(visits) == 4  # one row per visit, not per detector
    by_night = {}
    for v in visits:
        key = (v["target"], v["night"])
        by_night[key] = by_night.get(key, 0) + v["exposure_s"]
    assert by_night[("A0a", "20190402")] == 120 + 240
    assert sum(by_night.values()) == 780.0  # what survey_stats reports
    # the stats macros sum exactly these rows
    nightly = rows_by(lake.sql("SELECT * FROM nightly_stats()"), "target", "night")
    assert {k: r["exposure_s"] for k, r in nightly.items()} == by_night


def test_fwhm_arcsec_and_finite_or_null():
    con = duckdb.connect()
    load_macros(con)
    assert con.execute("SELECT fwhm_arcsec(2.0)").fetchone()[0] == pytest.approx(2 * F)
    scaled = con.execute("SELECT fwhm_arcsec(2.0, pixel_scale := 0.5)").fetchone()[0]
    assert scaled == pytest.approx(2.355)
    got = con.execute(
        "SELECT finite_or_null(x) FROM (VALUES (1.5), ('nan'::DOUBLE), "
        "('inf'::DOUBLE), (NULL)) t(x)"
    ).fetchall()
    assert got == [(1.5,), (None,), (None,), (None,)]


def test_macros_load_without_images_or_detrends_views():
    # A bare connection has neither view: the macros must load and fail only when called.
    con = duckdb.connect()
    load_macros(con)
    with pytest.raises(duckdb.CatalogException, match="images"):
        con.execute("SELECT * FROM nightly_stats()")


def test_stats_run_on_any_view_given_as_source(hand_lake):
    con = Lake(hand_lake).connect()
    con.execute("CREATE TEMP VIEW only_a0a AS SELECT * FROM images WHERE target = 'A0a'")
    got = con.execute(
        "SELECT target, count(*) FROM nightly_stats(source := 'only_a0a') GROUP BY target"
    ).fetchall()
    assert got == [("A0a", 2)]


# --- against numpy, on random lakes -----------------------------------------------------------
sigma = st.one_of(st.floats(0.5, 8.0), st.just(math.nan))
zero_point = st.one_of(st.floats(25.0, 33.0), st.just(math.nan), st.none())
image = st.tuples(
    st.sampled_from(["A0a", "B1b"]),
    st.sampled_from(["20190402", "20190403", "20190505"]),
    st.integers(1, 4),  # visit (within the night)
    st.integers(1, 62),  # detector
    sigma,
    zero_point,
    st.sampled_from([0.0, 0.7, 1.1, math.nan]),
)


def _median(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(values)) if values else None


def _percentile(values, q):
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.percentile(values, q)) if values else None


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(images=st.lists(image, min_size=1, max_size=40, unique_by=lambda i: i[:4]))
def test_nightly_and_detector_stats_equal_numpy(tmp_path_factory, images):
    rows = []
    for target, night, visit, detector, s, zp, dimm in images:
        visit_id = int(night[-3:]) * 10 + visit
        rows.append(
            deep_row(
                target,
                night,
                visit_id,
                detector,
                psfSigma=s,
                zeroPoint=zp,
                DIMM2SEE=dimm,
                exposureTime=60.0 * visit,
            )
        )
    lake = Lake(write_lake(tmp_path_factory.mktemp("lake"), rows))

    nightly = rows_by(lake.sql("SELECT * FROM nightly_stats()"), "target", "night")
    groups = {}
    for r in rows:
        groups.setdefault((r["fieldname"], r["night"]), []).append(r)
    assert set(nightly) == set(groups)
    for key, mine in groups.items():
        got = nightly[key]
        fwhm = [F * r["psfSigma"] for r in mine]
        assert got["images"] == len(mine)
        assert got["visits"] == len({r["visit"] for r in mine})
        assert got["exposure_s"] == sum({r["visit"]: r["exposureTime"] for r in mine}.values())
        for name, expected in (
            ("fwhm_median_arcsec", _median(fwhm)),
            ("fwhm_p10_arcsec", _percentile(fwhm, 10)),
            ("fwhm_p90_arcsec", _percentile(fwhm, 90)),
            ("zero_point_median", _median([r["zeroPoint"] for r in mine])),
            (
                "dimm_seeing_median_arcsec",
                _median([r["DIMM2SEE"] for r in mine if r["DIMM2SEE"] != 0.0]),
            ),
        ):
            assert got[name] == pytest.approx(expected), name

    detectors = rows_by(lake.sql("SELECT * FROM detector_stats()"), "detector")
    for (det,), got in detectors.items():
        mine = [r for r in rows if r["detector"] == det]
        assert got["images"] == len(mine)
        assert got["zero_point_median"] == pytest.approx(_median([r["zeroPoint"] for r in mine]))
        fwhm = [F * r["psfSigma"] for r in mine]
        assert got["fwhm_median_arcsec"] == pytest.approx(_median(fwhm))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.text(alphabet=st.sampled_from("aVR01 \t\n\f\r\v\xa0é."))))
def test_filter_band_is_band_of(name):
    """The SQL and the Python rule give every filter name the same band."""
    from nightlake.detrends.images import band_of

    con = _band_connection()
    (sql,) = con.execute("SELECT filter_band($f)", {"f": name}).fetchone()
    assert sql == band_of(name)


_BAND_CON: list = []


def _band_connection():
    if not _BAND_CON:
        con = duckdb.connect()
        load_macros(con)
        _BAND_CON.append(con)
    return _BAND_CON[0]
