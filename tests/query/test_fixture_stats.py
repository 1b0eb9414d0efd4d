"""The statistics macros on the converted fixtures, against astropy + numpy on the ECSV files."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from astropy.table import Table, vstack
from astropy.time import Time
from astropy.utils import iers

from nightlake import Lake

iers.conf.auto_download = False
F = 2.355 * 0.2637


@pytest.fixture(scope="module")
def converted(tmp_path_factory, request):
    from nightlake.ingest.convert import convert

    collections = request.config.rootpath / "data" / "fixtures" / "collections"
    lake = Lake(tmp_path_factory.mktemp("fixture-lake") / "lake")
    report = convert(lake, [collections])
    assert not report.failed, report.failed
    files = sorted(collections.glob("*.collection"))
    table = vstack([Table.read(p, format="ascii.ecsv") for p in files], metadata_conflicts="silent")
    return lake, table


def _finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def test_nightly_stats_equal_astropy_and_numpy(converted):
    lake, table = converted
    stats = lake.sql("SELECT * FROM nightly_stats()").to_pylist()
    got = {(r["target"], r["night"]): r for r in stats}
    groups = table.group_by(["fieldname", "night"])
    assert len(got) == len(groups.groups)
    for key, group in zip(groups.groups.keys, groups.groups):
        row = got[(str(key["fieldname"]), str(key["night"]))]
        assert row["images"] == len(group)
        assert row["visits"] == len(set(group["visit"]))
        assert row["detectors"] == len(set(group["detector"]))
        per_visit = {int(v): float(e) for v, e in zip(group["visit"], group["exposureTime"])}
        assert row["exposure_s"] == pytest.approx(sum(per_visit.values()))
        fwhm = _finite(F * np.asarray(group["psfSigma"], dtype=float))
        assert row["fwhm_median_arcsec"] == pytest.approx(np.median(fwhm))
        assert row["fwhm_p10_arcsec"] == pytest.approx(np.percentile(fwhm, 10))
        assert row["fwhm_p90_arcsec"] == pytest.approx(np.percentile(fwhm, 90))
        assert row["zero_point_median"] == pytest.approx(np.median(_finite(group["zeroPoint"])))
        assert row["sky_noise_median"] == pytest.approx(np.median(_finite(group["skyNoise"])))
        dimm = _finite(group["DIMM2SEE"])
        dimm = dimm[dimm != 0.0]
        if dimm.size:
            assert row["dimm_seeing_median_arcsec"] == pytest.approx(np.median(dimm))
        else:
            assert row["dimm_seeing_median_arcsec"] is None
        airmass = _finite(group["airmass"])
        assert row["airmass_min"] == pytest.approx(airmass.min())
        assert row["airmass_max"] == pytest.approx(airmass.max())
        first = Time(np.min(group["mjd"]), format="mjd", scale="tai").utc.to_datetime()
        assert abs(row["first_obs_time"] - first) < dt.timedelta(milliseconds=1)


def test_detector_and_survey_stats_equal_numpy(converted):
    lake, table = converted
    got = {r["detector"]: r for r in lake.sql("SELECT * FROM detector_stats()").to_pylist()}
    assert sorted(got) == sorted(set(int(d) for d in table["detector"]))
    for det, row in got.items():
        mine = table[table["detector"] == det]
        assert row["images"] == len(mine)
        assert row["zero_point_median"] == pytest.approx(np.median(_finite(mine["zeroPoint"])))
    (survey,) = lake.sql("SELECT * FROM survey_stats()").to_pylist()
    assert survey["images"] == len(table)
    assert survey["nights"] == len(set(table["night"]))
    fwhm = _finite(F * np.asarray(table["psfSigma"], dtype=float))
    assert survey["fwhm_median_arcsec"] == pytest.approx(np.median(fwhm))


def test_nan_and_unmeasured_values_in_the_fixtures_are_skipped(converted):
    lake, table = converted
    nan_zp = int(np.sum(~np.isfinite(np.asarray(table["zeroPoint"], dtype=float))))
    unmeasured = int(np.sum(np.asarray(table["DIMM2SEE"], dtype=float) == 0.0))
    assert nan_zp > 0 and unmeasured > 0  # the fixtures exercise both rules
    got = lake.sql(
        "SELECT count(*) FILTER (WHERE zero_point IS NULL) AS zp, "
        "count(*) FILTER (WHERE dimm_seeing_arcsec IS NULL) AS dimm "
        "FROM image_quality()"
    )
    assert (got["zp"][0].as_py(), got["dimm"][0].as_py()) == (nan_zp, unmeasured)
