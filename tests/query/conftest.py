"""Small hand-made lakes in the converter's on-disk layout, for the query-side tests.

``write_lake(root, rows)`` writes ``root/images/target=<t>/night=<n>/<n>_<t>.parquet`` (or a
third ``detector=<d>/`` level) with the columns, field metadata and ``nightlake`` key-value
metadata that ``nightlake convert`` writes, so these tests run before and independently of
the converter.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest

from .astro_lakes import FIXTURES, convert_into

# (name, arrow type name, unit) in the column order of a DEEP collection
DEEP_COLUMNS: list[tuple[str, str, str | None]] = [
    ("dataId", "string", None),
    ("std_idx", "int64", None),
    ("ext_idx", "int64", None),
    ("std_name", "string", None),
    ("collection", "string", None),
    ("datasetType", "string", None),
    ("visit", "int64", None),
    ("detector", "int64", None),
    ("band", "string", None),
    ("filter", "string", None),
    ("exposureTime", "float64", "s"),
    ("mjd_start", "float64", "d"),
    ("mjd", "float64", "d"),
    ("object", "string", None),
    ("pointing_ra", "float64", "deg"),
    ("pointing_dec", "float64", "deg"),
    ("airmass", "float64", None),
    ("ra", "float64", "deg"),
    ("dec", "float64", "deg"),
    ("ra_tl", "float64", "deg"),
    ("dec_tl", "float64", "deg"),
    ("ra_tr", "float64", "deg"),
    ("dec_tr", "float64", "deg"),
    ("ra_br", "float64", "deg"),
    ("dec_br", "float64", "deg"),
    ("ra_bl", "float64", "deg"),
    ("dec_bl", "float64", "deg"),
    ("OBSID", "string", None),
    ("DTNSANAM", "string", None),
    ("AIRMASS_1", "float64", None),
    ("DIMM2SEE", "float64", "arcsec"),
    ("GAINA", "float64", None),
    ("GAINB", "float64", None),
    ("psfSigma", "float64", "pix"),
    ("psfArea", "float64", None),
    ("nPsfStar", "int64", None),
    ("zeroPoint", "float64", "mag"),
    ("skyBg", "float64", None),
    ("skyNoise", "float64", None),
    ("meanVar", "float64", None),
    ("astromOffsetMean", "float64", "arcsec"),
    ("astromOffsetStd", "float64", "arcsec"),
    ("config", "string", None),
    ("wcs", "string", None),
    ("night", "string", None),
    ("fieldname", "string", None),
    ("obs_time", "timestamp[us]", None),
]
COLUMN_NAMES = [c[0] for c in DEEP_COLUMNS]
MJD_EPOCH = dt.datetime(1858, 11, 17)


def night_mjd(night: str) -> float:
    """MJD of local evening (~23:00 UTC) of a night label YYYYMMDD."""
    day = dt.datetime.strptime(night, "%Y%m%d") + dt.timedelta(hours=23)
    return (day - MJD_EPOCH).total_seconds() / 86400.0


def deep_row(target: str, night: str, visit: int, detector: int, **values: Any) -> dict[str, Any]:
    """One image row with every DEEP column; ``values`` override the defaults by name."""
    mjd = values.pop("mjd", night_mjd(night) + (visit % 1000) * 0.002)
    row: dict[str, Any] = {
        "dataId": f"{{instrument: 'DECam', detector: {detector}, visit: {visit}}}",
        "std_idx": visit * 100 + detector,
        "ext_idx": detector,
        "std_name": f"{night}_{target}_{visit}_{detector}",
        "collection": f"DEEP/{night}/{target}/science#step6/20211110T000000Z",
        "datasetType": "calexp",
        "visit": visit,
        "detector": detector,
        "band": "VR",
        "filter": "VR DECam c0007 6300.0 2600.0",
        "exposureTime": 120.0,
        "mjd_start": mjd - 120.0 / 86400.0,
        "mjd": mjd,
        "object": f"{target}_{night}",
        "pointing_ra": 216.0,
        "pointing_dec": -12.0,
        "airmass": 1.2,
        "ra": 216.0,
        "dec": -12.0,
        "ra_tl": 215.9,
        "dec_tl": -11.9,
        "ra_tr": 216.1,
        "dec_tr": -11.9,
        "ra_br": 216.1,
        "dec_br": -12.1,
        "ra_bl": 215.9,
        "dec_bl": -12.1,
        "OBSID": f"ct4m{night}t000000",
        "DTNSANAM": f"c4d_{night[2:]}_000000_ooi_VR_v1.fits.fz",
        "AIRMASS_1": 1.2,
        "DIMM2SEE": 0.9,
        "GAINA": 4.0,
        "GAINB": 4.1,
        "psfSigma": 2.0,
        "psfArea": 150.0,
        "nPsfStar": 40,
        "zeroPoint": 31.0,
        "skyBg": 500.0,
        "skyNoise": 20.0,
        "meanVar": 400.0,
        "astromOffsetMean": 0.02,
        "astromOffsetStd": 0.01,
        "config": '{"doApCorr": true}',
        "wcs": json.dumps({"CRVAL1": 216.0, "CRVAL2": -12.0, "detector": detector}),
        "night": night,
        "fieldname": target,
    }
    row.update(values)
    row["obs_time"] = MJD_EPOCH + dt.timedelta(days=row["mjd"])
    unknown = set(row) - set(COLUMN_NAMES)
    assert not unknown, f"not a DEEP column: {unknown}"
    return row


def _schema():
    import pyarrow as pa

    fields = []
    for name, type_name, unit in DEEP_COLUMNS:
        meta = {}
        if unit:
            meta["unit"] = unit
        if name == "AIRMASS_1":
            meta["original_name"] = "AIRMASS"
        fields.append(pa.field(name, pa.type_for_alias(type_name), metadata=meta or None))
    return pa.schema(fields)


def write_partition(path: Path, rows: list[dict[str, Any]], *, sources: list[Path] = ()) -> Path:
    """One partition file as the converter writes it (with ``nightlake`` metadata)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema()
    table = pa.Table.from_pylist(rows, schema=schema)
    first = rows[0]
    meta = {
        "format_version": 1,
        "nightlake_version": "test",
        "time_scale": "tai",
        "target": first["fieldname"],
        "night": first["night"],
        "rows": len(rows),
        "sources": [
            {
                "path": str(Path(s).resolve()),
                "size": Path(s).stat().st_size,
                "mtime_ns": Path(s).stat().st_mtime_ns,
                "sha256": hashlib.sha256(Path(s).read_bytes()).hexdigest(),
            }
            for s in sources
        ],
        "renames": {"AIRMASS_1": "AIRMASS"},
        "table_meta": {},
        "ecsv_header": ["# %ECSV 1.0"],
    }
    table = table.replace_schema_metadata({"nightlake": json.dumps(meta)})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    return path


def write_lake(
    root: Path,
    rows: list[dict[str, Any]],
    *,
    by_detector: bool = False,
    sources: dict[tuple[str, str], list[Path]] | None = None,
) -> Path:
    """A lake at ``root`` holding ``rows``, one file per target/night (or per detector)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        key = (row["fieldname"], row["night"]) + ((row["detector"],) if by_detector else ())
        groups.setdefault(key, []).append(row)
    for key, group in sorted(groups.items()):
        target, night = key[0], key[1]
        part = root / "images" / f"target={target}" / f"night={night}"
        if by_detector:
            part = part / f"detector={key[2]}"
        group.sort(key=lambda r: (r["detector"], r["visit"], r["mjd"]))
        write_partition(
            part / f"{night}_{target}.parquet",
            group,
            sources=(sources or {}).get((target, night), []),
        )
    return root


# --- a hand-checked lake --------------------------------------------------------------------
# Two targets, three nights; psfSigma chosen so FWHM medians are easy to check by hand
# (fwhm = 2.355 * 0.2637 * psfSigma = 0.6210135 * psfSigma).
FWHM_PER_SIGMA = 2.355 * 0.2637


def hand_rows() -> list[dict[str, Any]]:
    nan = math.nan
    rows = []
    # A0a / 20190402: visits 1 and 2, detectors 1..3 -> 6 images; sigmas 1..6 with one NaN
    sigmas = {(1, 1): 1.0, (1, 2): 2.0, (1, 3): 3.0, (2, 1): 4.0, (2, 2): nan, (2, 3): 6.0}
    zps = {(1, 1): 30.0, (1, 2): 31.0, (1, 3): nan, (2, 1): 32.0, (2, 2): 33.0, (2, 3): None}
    dimm = {(1, 1): 0.0, (1, 2): 0.8, (1, 3): 1.0, (2, 1): 0.0, (2, 2): 0.0, (2, 3): 1.2}
    for (visit, det), sigma in sigmas.items():
        rows.append(
            deep_row(
                "A0a",
                "20190402",
                100 + visit,
                det,
                psfSigma=sigma,
                zeroPoint=zps[(visit, det)],
                DIMM2SEE=dimm[(visit, det)],
                airmass=1.0 + 0.1 * visit,
                exposureTime=120.0 * visit,
            )
        )
    # A0a / 20190403: one visit, two detectors
    rows.append(deep_row("A0a", "20190403", 201, 1, psfSigma=2.0, zeroPoint=30.5, skyNoise=10.0))
    rows.append(
        deep_row(
            "A0a", "20190403", 201, 2, psfSigma=4.0, zeroPoint=31.5, skyNoise=30.0, airmass=nan
        )
    )
    # B1a / 20190402: one visit, one detector (detector 3)
    rows.append(
        deep_row(
            "B1a", "20190402", 301, 3, psfSigma=3.0, zeroPoint=29.0, exposureTime=300.0, airmass=1.5
        )
    )
    return rows


@pytest.fixture
def hand_lake(tmp_path) -> Path:
    """The hand-checked lake (see ``hand_rows``)."""
    return write_lake(tmp_path / "lake", hand_rows())


@pytest.fixture(scope="session")
def fixture_lake(tmp_path_factory) -> Path:
    """The eight fixture collections as a lake (read-only for the tests that use it)."""
    return convert_into(tmp_path_factory.mktemp("fixture-lake") / "lake", FIXTURES / "collections")
