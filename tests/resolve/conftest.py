"""Fixtures for detrend resolution: DetReg databases and small image lakes built in tmp_path."""

from __future__ import annotations

import sys
import types

import pytest

try:  # TEMPORARY until issue 4 (nightlake.detreg) is merged: a minimal LP64 stand-in.
    import nightlake.detreg  # noqa: F401
except ImportError:  # pragma: no cover
    import hashlib
    import os

    import numpy as np

    _mod = types.ModuleType("nightlake.detreg")
    TYPE_CODES = {"bias": 1, "dark": 2, "flat": 3, "fringe": 4, "mask": 5}
    _DT = np.dtype({"names": ["tstart", "tstop", "treg", "sigma", "clipsigma", "type", "filter",
                              "ccd", "filename", "flag1", "flag2"],
                    "formats": ["<u8", "<u8", "<u8", "<f4", "<f4", "<i4", "<i4", "<i4", "S254",
                                "i1", "i1"],
                    "offsets": [0, 8, 16, 24, 28, 32, 36, 40, 44, 298, 299], "itemsize": 304})

    class DetRegDB:
        def __init__(self, path, records, filters):
            st = os.stat(path)
            self.path, self.records, self.filters = path, records, filters
            self.layout, self.byteorder = "LP64", "little"
            self.fingerprint = {"path": os.path.abspath(path), "size": st.st_size,
                                "mtime_ns": st.st_mtime_ns,
                                "sha256": hashlib.sha256(open(path, "rb").read()).hexdigest()}

        def __len__(self):
            return len(self.records)

    def make_records(rows):
        out = np.zeros(len(rows), dtype=_DT)
        for i, row in enumerate(rows):
            for k, v in row.items():
                out[i][k] = v.encode() if isinstance(v, str) else v
        return out

    def _card(key, value):
        return f"{key:<8}= {value:>20}".ljust(80)

    def write_db(path, records, filters, *, layout="LP64", byteorder="little"):
        cards = [_card("SIMPLE", "T"), _card("BITPIX", 8), _card("NAXIS", 1),
                 _card("NAXIS1", len(records) * 304), _card("NRECORD", len(records))]
        cards += [f"FILT{c:<4}= '{n}'".ljust(80) for c, n in filters.items()] + ["END".ljust(80)]
        head = "".join(cards).encode()
        head += b" " * (-len(head) % 2880)
        data = np.asarray(records, dtype=_DT).tobytes()
        data += b"\0" * (-len(data) % 2880)
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(head + data)
        os.replace(tmp, path)

    def read_db(path):
        from nightlake.errors import FormatError

        raw = open(path, "rb").read()
        if not raw.startswith(b"SIMPLE"):
            raise FormatError(path, "not a FITS file")
        filters, n, off = {}, 0, 0
        while True:
            card = raw[off:off + 80].decode()
            off += 80
            if card.startswith("END"):
                break
            if card.startswith("NRECORD"):
                n = int(card[10:].strip())
            if card.startswith("FILT"):
                filters[int(card[4:8])] = card.split("'")[1]
        off += -off % 2880
        return DetRegDB(path, np.frombuffer(raw, dtype=_DT, count=n, offset=off).copy(), filters)

    for _name, _value in dict(TYPE_CODES=TYPE_CODES, TYPE_NAMES={v: k for k, v in TYPE_CODES.items()},
                              OPEN_ENDED=2**64 - 1, DetRegDB=DetRegDB, make_records=make_records,
                              write_db=write_db, read_db=read_db).items():
        setattr(_mod, _name, _value)
    sys.modules["nightlake.detreg"] = _mod


# -- builders ---------------------------------------------------------------------------------
import datetime as _dt  # noqa: E402
from pathlib import Path  # noqa: E402

T0 = 1554181980  # 2019-04-02T05:13:00Z
VR = "VR DECam c0007 6300.0 2600.0"
FILTERS = {1: VR, 2: "VR", 3: "g DECam SDSS c0001 4720.0 1520.0", 4: "r"}


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
    schema = pa.schema([("visit", pa.int64()), ("detector", pa.int64()), ("filter", pa.string()),
                        ("band", pa.string()), ("exposureTime", pa.float64()),
                        ("obs_time", pa.timestamp("us"))])
    for (target, night), part in groups.items():
        cols = {name: [r.get(name) for r in part] for name in schema.names}
        out = lake / "images" / f"target={target}" / f"night={night}" / f"{night}_{target}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols, schema=schema), out)


def write_detreg(path: Path, rows: list[dict], filters: dict[int, str] | None = None) -> Path:
    from nightlake.detreg import make_records, write_db

    write_db(path, make_records(rows), dict(FILTERS if filters is None else filters))
    return path


@pytest.fixture
def build():
    """Namespace of the builders above, for tests."""
    return types.SimpleNamespace(T0=T0, VR=VR, FILTERS=FILTERS, utc=utc, write_images=write_images,
                                 write_detreg=write_detreg)
