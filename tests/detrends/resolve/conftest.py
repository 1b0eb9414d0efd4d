"""Fixtures for detrend resolution: DetReg databases and small image lakes built in tmp_path."""

from __future__ import annotations

import datetime as _dt
import types
from pathlib import Path

import pytest

T0 = 1554181980  # 2019-04-02T05:13:00Z
VR = "VR DECam c0007 6300.0 2600.0"
FILTERS = {1: VR, 2: "VR", 3: "g DECam SDSS c0001 4720.0 1520.0", 4: "r"}
OPEN = 2**64 - 1  # tstop of an open-ended record
TYPE_CODES = {"bias": 1, "dark": 2, "flat": 3, "fringe": 4, "mask": 5}


def record(kind, ccd, filt, start, stop, treg, name, **fields) -> dict:
    """A DetReg record row: validity ``[T0 + start, T0 + stop)`` (stop None: open-ended)."""
    return dict(
        type=TYPE_CODES[kind],
        ccd=ccd,
        filter=filt,
        tstart=T0 + start,
        tstop=OPEN if stop is None else T0 + stop,
        treg=treg,
        filename=f"/m/{name}.fits",
        **fields,
    )


def utc(seconds: float) -> _dt.datetime:
    """Naive UTC datetime (what a TIMESTAMP column holds) from Unix seconds."""
    return _dt.datetime(1970, 1, 1) + _dt.timedelta(microseconds=round(seconds * 1_000_000))


def write_images(lake: Path, rows: list[dict]) -> None:
    """An image lake in the lead's layout: images/target=<t>/night=<n>/<file>.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row.get("target", "A0a"), row.get("night", "20190402")), []).append(row)
    schema = pa.schema(
        [
            ("visit", pa.int64()),
            ("detector", pa.int64()),
            ("filter", pa.string()),
            ("band", pa.string()),
            ("exposureTime", pa.float64()),
            ("obs_time", pa.timestamp("us")),
        ]
    )
    for (target, night), part in groups.items():
        cols = {name: [r.get(name) for r in part] for name in schema.names}
        out = lake / "images" / f"target={target}" / f"night={night}" / f"{night}_{target}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols, schema=schema), out)


def write_detreg(path: Path, rows: list[dict], filters: dict[int, str] | None = None) -> Path:
    from nightlake.detrends.detreg import make_records, write_db

    write_db(path, make_records(rows), dict(FILTERS if filters is None else filters))
    return path


@pytest.fixture
def build():
    """Namespace of the builders above, for tests."""
    return types.SimpleNamespace(
        T0=T0, VR=VR, FILTERS=FILTERS, utc=utc, write_images=write_images, write_detreg=write_detreg
    )
