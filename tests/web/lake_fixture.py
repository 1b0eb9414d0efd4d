"""The lake the web tests, the load bench and the docs' screenshots serve.

``build_web_lake(out)`` converts the committed fixture collections (seven nights, one filter,
detectors 1, 5, 31 and 62) and mirrors a small DetReg database into it::

    out/
      lake/        the converted collections + detrends/ (the mirror, via ``sync``)
      detrend.db   per detector and observing campaign a bias, a VR flat and fringe and a
                   120 s dark; masks open-ended. On purpose: no VR flat in October 2020
                   and no 2019 bias for detector 62 (gaps), and a reprocessed flat of
                   detector 1 registered later inside a regular one (an overlap)

No pytest here (bench/serve_load.py and docs/make_screenshots.py build the same lake).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"
VR = "VR DECam c0007 6300.0 2600.0"
DETECTORS = (1, 5, 31, 62)
#: observing campaigns around the fixture nights; each gets its own masters
CAMPAIGNS = [
    ("2019-03-15", "2019-04-15"),
    ("2020-10-01", "2020-11-01"),
    ("2021-04-20", "2021-10-20"),
    ("2022-05-01", "2022-06-15"),
]
REGISTERED = "2022-07-01"
DARK_EXPTIME = 120  # a dark's filter field holds its exposure time


def _unix(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp())


def _record(kind: str, ccd: int, start: str, stop: str | None, name: str, **fields) -> dict:
    return dict(
        type=kind,
        ccd=ccd,
        tstart=_unix(start),
        tstop=None if stop is None else _unix(stop),
        treg=_unix(fields.pop("treg", REGISTERED)),
        filename=f"/masters/{name}.fits",
        **fields,
    )


def _records() -> list[dict]:
    rows = []
    for ccd in DETECTORS:
        rows.append(_record("mask", ccd, "2019-01-01", None, f"mask-c{ccd:02d}", filter=-1))
        for start, stop in CAMPAIGNS:
            tag = f"c{ccd:02d}-{start}"
            if not (ccd == 62 and start.startswith("2019")):  # a gap: no 2019 bias for CCD 62
                rows.append(_record("bias", ccd, start, stop, f"bias-{tag}", filter=-1))
            if not start.startswith("2020"):  # a gap: no VR flat in October 2020
                rows.append(_record("flat", ccd, start, stop, f"flat-VR-{tag}", filter=1))
            rows.append(_record("fringe", ccd, start, stop, f"fringe-VR-{tag}", filter=1))
            rows.append(_record("dark", ccd, start, stop, f"dark-{tag}", filter=DARK_EXPTIME))
    redo = dict(filter=1, treg="2022-08-01")  # reprocessed later, inside a regular flat
    rows.append(_record("flat", 1, "2019-03-25", "2019-04-10", "flat-VR-c01-redo", **redo))
    return rows


def build_web_lake(out: Path) -> Path:
    """Build ``out/lake`` (see the module docstring) and return it."""
    from nightlake import Lake
    from nightlake.detrends.detreg import make_records, write_db
    from nightlake.detrends.sync import sync
    from nightlake.ingest.convert import convert

    lake = Lake(out / "lake")
    report = convert(lake, [str(FIXTURES / "collections")])
    if report.failed:
        raise RuntimeError(f"fixture collections failed to convert: {report.failed}")
    db = out / "detrend.db"
    write_db(db, make_records(_records()), {1: VR})
    sync(lake, db)
    return out / "lake"
