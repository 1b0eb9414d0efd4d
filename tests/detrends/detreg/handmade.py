"""DetReg files built by hand with ``struct`` (independent of nightlake.detrends.detreg.format)."""

from __future__ import annotations

import struct

# Offsets worked out by hand from the C alignment rules (see docs/detreg-format.md):
#   LP64:  Q Q Q f f i i i 254s b b + 4 pad = 304 bytes
#   ILP32: I I I f f i i i 254s b b        = 288 bytes
FORMATS = {"LP64": "QQQffiii254sbb4x", "ILP32": "IIIffiii254sbb"}
PREFIX = {"little": "<", "big": ">"}


def card(key: str, value) -> bytes:
    if isinstance(value, str):
        text = f"{key:<8}= '{value}'"
    elif isinstance(value, bool):
        text = f"{key:<8}= {'T' if value else 'F':>20}"
    else:
        text = f"{key:<8}= {value:>20}"
    return f"{text:<80}".encode("ascii")


def pack_record(layout: str, byteorder: str, rec: dict) -> bytes:
    fmt = PREFIX[byteorder] + FORMATS[layout]
    return struct.pack(
        fmt,
        rec["tstart"],
        rec["tstop"],
        rec["treg"],
        rec["sigma"],
        rec["clipsigma"],
        rec["type"],
        rec["filter"],
        rec["ccd"],
        rec["filename"],
        rec["flag1"],
        rec["flag2"],
    )


def handmade_file(
    layout: str,
    byteorder: str,
    records: list[dict],
    *,
    filters: dict[int, str] | None = None,
    cards: dict | None = None,
    drop: tuple[str, ...] = (),
    with_layout: bool = True,
) -> bytes:
    """A complete DetReg file; ``cards`` overrides header values, ``drop`` removes cards."""
    recsize = struct.calcsize("<" + FORMATS[layout])
    values = {
        "SIMPLE": True,
        "BITPIX": 8,
        "NAXIS": 1,
        "NAXIS1": recsize * len(records),
        "EXTEND": False,
        "DBTYPE": "DETREG",
        "DBVERS": 1,
        "RECSIZE": recsize,
        "NRECORD": len(records),
        "BYTEORD": byteorder.upper(),
    }
    if with_layout:
        values["LAYOUT"] = layout
    for code, name in (filters or {}).items():
        values[f"FILT{code}"] = name
    values["DATE"] = "2014-09-01T00:00:00"
    values.update(cards or {})
    header = b"".join(card(k, v) for k, v in values.items() if k not in drop)
    header += f"{'END':<80}".encode()
    header += b" " * (-len(header) % 2880)
    data = b"".join(pack_record(layout, byteorder, r) for r in records)
    return header + data + b"\0" * (-len(data) % 2880)


SAMPLE = [
    {
        "tstart": 1400000000,
        "tstop": 1402592000,
        "treg": 1500000000,
        "sigma": 1.5,
        "clipsigma": 1.25,
        "type": 3,
        "filter": 1,
        "ccd": 5,
        "filename": b"/deep/masters/flat_c05.fits",
        "flag1": -3,
        "flag2": 7,
    },
    {
        "tstart": 1400000001,
        "tstop": None,
        "treg": 1500000001,
        "sigma": 0.0,
        "clipsigma": -2.5,
        "type": 2,
        "filter": 300,
        "ccd": 62,
        "filename": b"/" + b"d" * 252,
        "flag1": 127,
        "flag2": -128,
    },
    {
        "tstart": 0,
        "tstop": 1,
        "treg": 2,
        "sigma": 3.0,
        "clipsigma": 4.0,
        "type": 5,
        "filter": -1,
        "ccd": 1,
        "filename": b"",
        "flag1": 0,
        "flag2": 0,
    },
]
