"""The night-report macros (sql/70_nights.sql) on the hand-checked lake of conftest.py."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nightlake import Lake

from .conftest import FWHM_PER_SIGMA, deep_row, write_lake

F = FWHM_PER_SIGMA


def test_night_summary_hand_checked(hand_lake):
    got = {r["night"]: r for r in Lake(hand_lake).sql("SELECT * FROM night_summary()").to_pylist()}
    assert list(got) == ["20190402", "20190403"]
    first, second = got["20190402"], got["20190403"]
    # 20190402: A0a visits 101, 102 (3 detectors each) and B1a visit 301 (one detector)
    assert (first["targets"], first["bands"], first["images"], first["visits"]) == (
        "A0a, B1a",
        "VR",
        7,
        3,
    )
    # finite sigmas 1, 2, 3, 4, 6 (A0a) and 3 (B1a): median 3; zero points 30..33 and 29
    # (NaN and NULL left out): median 31
    assert first["fwhm_median_arcsec"] == pytest.approx(3 * F)
    assert first["zero_point_median"] == pytest.approx(31.0)
    assert first["sky_bg_median"] == pytest.approx(500.0)
    assert (second["images"], second["visits"]) == (2, 1)
    assert second["fwhm_median_arcsec"] == pytest.approx(3 * F)  # sigmas 2 and 4
    assert second["zero_point_median"] == pytest.approx(31.0)  # 30.5 and 31.5


def test_visit_summary_hand_checked(hand_lake):
    rows = Lake(hand_lake).sql("SELECT * FROM visit_summary() WHERE night = '20190402'")
    got = {r["visit"]: r for r in rows.to_pylist()}
    assert set(got) == {101, 102, 301}
    assert got[101]["fwhm_median_arcsec"] == pytest.approx(2 * F)  # sigmas 1, 2, 3
    assert got[101]["zero_point_median"] == pytest.approx(30.5)  # 30, 31 (NaN left out)
    assert got[102]["fwhm_median_arcsec"] == pytest.approx(5 * F)  # 4, 6 (NaN left out)
    assert got[102]["zero_point_median"] == pytest.approx(32.5)  # 32, 33 (NULL left out)
    assert (got[102]["exposure_s"], got[102]["images"]) == (240.0, 3)
    assert (got[301]["target"], got[301]["airmass_median"]) == ("B1a", 1.5)
    times = [r["obs_time"] for r in rows.to_pylist()]
    assert times == sorted(times)


def test_focal_plane_offsets_from_the_pointing(tmp_path):
    """deep_row's corners lie ±0.1° around the pointing (216, -12); a detector whose
    corners straddle RA 0/360 is measured across the wrap, not across the sky."""
    rows = [deep_row("A0a", "20190402", 1, d) for d in (1, 2)]
    rows.append(
        deep_row(
            "A0a",
            "20190402",
            1,
            3,
            pointing_ra=359.95,
            ra_tl=359.9,
            ra_bl=359.9,
            ra_tr=0.1,
            ra_br=0.1,
        )
    )
    lake = write_lake(tmp_path / "lake", rows)
    got = {r["detector"]: r for r in Lake(lake).sql("SELECT * FROM focal_plane()").to_pylist()}
    cos = math.cos(math.radians(-12.0))
    assert got[1]["x_min_deg"] == pytest.approx(-0.1 * cos)
    assert got[1]["x_max_deg"] == pytest.approx(0.1 * cos)
    assert (got[1]["y_min_deg"], got[1]["y_max_deg"]) == (pytest.approx(-0.1), pytest.approx(0.1))
    assert got[3]["x_min_deg"] == pytest.approx(-0.05 * cos)
    assert got[3]["x_max_deg"] == pytest.approx(0.15 * cos)


@pytest.fixture(scope="module")
def macros():
    """A connection with every macro and no lake (sky_offset_ra needs none)."""
    import duckdb

    from nightlake.sql import load_macros

    con = duckdb.connect()
    load_macros(con)
    yield con
    con.close()


@given(
    ra=st.floats(0, 360, exclude_max=True),
    ra0=st.floats(0, 360, exclude_max=True),
    dec0=st.floats(-89, 89),
)
def test_sky_offset_ra_is_the_shortest_way_round(macros, ra, ra0, dec0):
    got = macros.execute("SELECT sky_offset_ra($1, $2, $3)", [ra, ra0, dec0]).fetchone()[0]
    delta = ra - ra0
    while delta >= 180:  # the reference: step round the circle until within [-180, 180)
        delta -= 360
    while delta < -180:
        delta += 360
    assert got == pytest.approx(delta * math.cos(math.radians(dec0)), abs=1e-9)
