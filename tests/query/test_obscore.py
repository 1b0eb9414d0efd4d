"""The obscore view against the ObsCore 1.1 standard's mandatory-column table."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from astropy import units as u

STANDARD = Path(__file__).with_name("obscore_1_1.csv")


def standard_columns() -> list[dict[str, str]]:
    lines = [line for line in STANDARD.read_text().splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines))


def test_every_mandatory_column_with_its_type_and_unit(fixture_lake):
    from nightlake import Lake

    lake = Lake(fixture_lake)
    types = {
        r["column_name"]: r["data_type"]
        for r in lake.sql(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'obscore'"
        ).to_pylist()
    }
    table = lake.table("SELECT * FROM obscore")
    described = {r["name"]: r for r in lake.sql("SELECT * FROM obscore_columns()").to_pylist()}
    standard = standard_columns()
    assert len(standard) == 30
    for col in standard:
        name = col["name"]
        assert types.get(name) == col["type"], (name, types.get(name), col["type"])
        want = u.Unit(col["unit"]) if col["unit"] else None
        assert getattr(table[name], "unit", None) == want, name
        assert described[name]["ucd"] == col["ucd"], name


def test_values_against_the_source_rows(fixture_lake):
    from nightlake import Lake

    lake = Lake(fixture_lake)
    rows = lake.sql(
        "SELECT o.*, i.ra, i.dec, i.mjd_start, i.exposureTime, i.psfSigma, i.ra_tl, i.dec_tl, "
        "i.ra_bl, i.dec_bl FROM obscore o JOIN images i USING (visit, detector, night) "
        "WHERE (visit + detector) % 7 = 0 ORDER BY visit, detector"
    ).to_pylist()
    assert len(rows) >= 10
    for r in rows:
        assert r["dataproduct_type"] == "image" and r["obs_collection"] == "DEEP"
        assert r["facility_name"] == "CTIO Blanco" and r["instrument_name"] == "DECam"
        assert r["obs_id"] == f"{r['visit']}_{r['detector']:02d}"
        assert r["obs_publisher_did"].endswith(r["obs_id"])
        assert (r["s_ra"], r["s_dec"]) == (r["ra"], r["dec"])
        assert r["t_min"] == r["mjd_start"]
        assert r["t_max"] == pytest.approx(r["mjd_start"] + r["exposureTime"] / 86400, abs=1e-9)
        assert r["t_exptime"] == r["exposureTime"]
        if math.isfinite(r["psfSigma"]):
            assert r["s_resolution"] == pytest.approx(2.355 * 0.2637 * r["psfSigma"])
        else:
            assert r["s_resolution"] is None
        assert (r["em_min"], r["em_max"]) == (4.9e-7, 7.65e-7)  # the VR band
        words = r["s_region"].split()
        assert words[:2] == ["POLYGON", "ICRS"] and len(words) == 10
        assert [float(w) for w in words[2:4]] == [r["ra_tl"], r["dec_tl"]]
        assert [float(w) for w in words[8:10]] == [r["ra_bl"], r["dec_bl"]]
        assert 0.3 < r["s_fov"] < 0.4  # a DECam CCD's diagonal, in degrees


def test_the_view_needs_images_but_the_macros_do_not(tmp_path):
    import duckdb

    from nightlake.query.astro import create_derived_views
    from nightlake.sql import load_macros

    con = duckdb.connect()
    load_macros(con)
    create_derived_views(con)  # no images view: no obscore view, no error
    assert not con.execute("SELECT * FROM duckdb_views() WHERE view_name = 'obscore'").fetchall()
