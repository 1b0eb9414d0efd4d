"""The lake the web tests, the load bench and the docs' screenshots serve.

``build_web_lake(out)`` converts the committed fixture collections (seven nights, one filter,
detectors 1, 5, 31 and 62) and mirrors a small DetReg database into it::

    out/
      lake/        the converted collections + detrends/ (the mirror, via ``sync``)
      detrend.db   VR flats per campaign (none in October 2020: a gap for that night),
                   a reprocessed flat of detector 1 over 2019 (an overlap), biases
                   open-ended from 2019 except detector 62's, which start in 2021

No pytest here (bench/serve_load.py and docs/make_screenshots.py build the same lake).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"
VR = "VR DECam c0007 6300.0 2600.0"
DETECTORS = (1, 5, 31, 62)
FLAT_CAMPAIGNS = [
    ("2019-03-15", "2019-04-15"),
    ("2021-04-20", "2021-10-20"),
    ("2022-05-01", "2022-06-15"),
]
REGISTERED = "2022-07-01"


def _unix(day: str | None) -> int | None:
    if day is None:
        return None
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp())


def _records() -> list[dict]:
    rows = []
    for ccd in DETECTORS:
        for start, stop in FLAT_CAMPAIGNS:
            rows.append(
                dict(
                    type="flat",
                    filter=1,
                    ccd=ccd,
                    tstart=_unix(start),
                    tstop=_unix(stop),
                    treg=_unix(REGISTERED),
                    filename=f"/m/flat-VR-c{ccd:02d}-{start}.fits",
                )
            )
        since = "2021-01-01" if ccd == 62 else "2019-01-01"
        rows.append(
            dict(
                type="bias",
                ccd=ccd,
                tstart=_unix(since),
                tstop=None,
                treg=_unix(REGISTERED),
                filename=f"/m/bias-c{ccd:02d}-{since}.fits",
            )
        )
    rows.append(
        dict(
            type="flat",
            filter=1,
            ccd=1,
            tstart=_unix("2019-03-25"),
            tstop=_unix("2019-04-10"),
            treg=_unix("2022-08-01"),
            filename="/m/flat-VR-c01-redo.fits",
        )
    )
    return rows


def build_web_lake(out: Path) -> Path:
    """Build ``out/lake`` (see the module docstring) and return it."""
    from nightlake.detrends.detreg import make_records, write_db
    from nightlake.detrends.sync import sync
    from nightlake.ingest.convert import convert
    from nightlake.lake import Lake

    lake = Lake(out / "lake")
    report = convert(lake, [str(FIXTURES / "collections")])
    if report.failed:
        raise RuntimeError(f"fixture collections failed to convert: {report.failed}")
    db = out / "detrend.db"
    write_db(db, make_records(_records()), {1: VR})
    sync(lake, db)
    return out / "lake"
