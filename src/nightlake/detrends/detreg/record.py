"""One DetReg record: the constants that name its codes and every way nightlake shows it.

``detsearch``, ``detregister list``/``delete``, the journal and the lake's mirror all show
records through this module, so they agree: type names, the open-ended ``tstop`` (``never`` in
text, ``null`` in JSON, a null timestamp in Arrow), filenames cut at the first NUL as C reads
them. Pure standard library, so that ``detsearch`` can import it without numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TYPE_CODES: dict[str, int] = {"bias": 1, "dark": 2, "flat": 3, "fringe": 4, "mask": 5}
TYPE_NAMES: dict[int, str] = {code: name for name, code in TYPE_CODES.items()}

#: In-memory tstop of an open-ended record (all bits set in a 64-bit unsigned long).
OPEN_ENDED = 2**64 - 1

#: Filter code meaning "any filter" (bias, mask).
ANY_FILTER = -1


def type_name(code: int) -> str:
    """The name of a type code; ``type<N>`` for a code no type has."""
    return TYPE_NAMES.get(int(code), f"type{int(code)}")


def iso(seconds: int) -> str:
    """Unix seconds of a record as ISO-8601 UTC; ``never`` for the open-ended tstop."""
    if seconds >= OPEN_ENDED:
        return "never"
    try:
        return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return str(int(seconds))


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


@dataclass(frozen=True)
class DetRegRecord:
    """A record as plain Python values (times in Unix seconds, as the file holds them)."""

    index: int  # position in file order
    type_code: int
    ccd: int
    filter_code: int  # a FILT<code> of the header; for a dark, its exposure time in s
    filter_name: str | None  # the name of filter_code; None for darks and unknown codes
    tstart: int
    tstop: int  # exclusive; OPEN_ENDED = never ends
    treg: int
    sigma: float  # NaN = unknown
    clipsigma: float
    filename: str  # decoded with surrogateescape: bytes that are not UTF-8 survive
    flag1: int = 0
    flag2: int = 0

    @classmethod
    def from_raw(cls, rec: Any, filters: dict[int, str], index: int = 0) -> DetRegRecord:
        """From one numpy record of ``RECORD_DTYPE`` and the header's filter table."""
        code, kind = int(rec["filter"]), int(rec["type"])
        if kind == TYPE_CODES["dark"]:
            name = None
        else:
            name = filters.get(code, "any" if code == ANY_FILTER else None)
        return cls(
            index=int(index),
            type_code=kind,
            ccd=int(rec["ccd"]),
            filter_code=code,
            filter_name=name,
            tstart=int(rec["tstart"]),
            tstop=int(rec["tstop"]),
            treg=int(rec["treg"]),
            sigma=float(rec["sigma"]),
            clipsigma=float(rec["clipsigma"]),
            filename=bytes(rec["filename"]).split(b"\0", 1)[0].decode("utf-8", "surrogateescape"),
            flag1=int(rec["flag1"]),
            flag2=int(rec["flag2"]),
        )

    @property
    def type(self) -> str:
        return type_name(self.type_code)

    @property
    def is_dark(self) -> bool:
        return self.type_code == TYPE_CODES["dark"]

    @property
    def open_ended(self) -> bool:
        return self.tstop >= OPEN_ENDED

    @property
    def dark_exptime(self) -> int | None:
        return self.filter_code if self.is_dark else None

    @property
    def filter_label(self) -> str:
        """The filter as a person reads it: its name, a dark's ``<N>s``, else the code."""
        if self.filter_name is not None:
            return self.filter_name
        return f"{self.filter_code}s" if self.is_dark else str(self.filter_code)

    # -- renderings ------------------------------------------------------------------------

    def to_json(self) -> dict:
        """The journal's (and ``detregister list --format json``'s) form, without ``index``:
        Unix seconds (``tstop`` open-ended kept as the all-bits value; callers that print
        null for it say so), unknown sigma → None."""
        return {
            "tstart": self.tstart,
            "tstop": self.tstop,
            "treg": self.treg,
            "sigma": _number(self.sigma),
            "clipsigma": _number(self.clipsigma),
            "type": self.type,
            "filter": self.filter_code,
            "filter_name": self.filter_name,
            "ccd": self.ccd,
            "filename": self.filename,
            "flag1": self.flag1,
            "flag2": self.flag2,
        }

    def to_search(self) -> dict:
        """``detsearch``'s form: ISO times (open-ended tstop → None) and Unix seconds."""
        return {
            "index": self.index,
            "type": self.type,
            "ccd": self.ccd,
            # a code the header does not name (ANY_FILTER included) has no name here
            "filter": None if self.is_dark or self.filter_code == ANY_FILTER else self.filter_name,
            "filter_code": self.filter_code,
            "dark_exptime": self.dark_exptime,
            "tstart": iso(self.tstart),
            "tstop": None if self.open_ended else iso(self.tstop),
            "treg": iso(self.treg),
            "tstart_s": self.tstart,
            "tstop_s": self.tstop,
            "treg_s": self.treg,
            "sigma": self.sigma,
            "clipsigma": self.clipsigma,
            "filename": self.filename,
            "flag1": self.flag1,
            "flag2": self.flag2,
        }

    def to_text(self) -> dict[str, str]:
        """Every field as the text a table shows (times ISO-8601 UTC, ``never``)."""
        return {
            "index": str(self.index),
            "type": self.type,
            "ccd": str(self.ccd),
            "filter": self.filter_label,
            "filter_name": self.filter_name or "",
            "dark_exptime": "" if self.dark_exptime is None else str(self.dark_exptime),
            "tstart": iso(self.tstart),
            "tstop": iso(self.tstop),
            "treg": iso(self.treg),
            "sigma": _short(self.sigma),
            "clipsigma": _short(self.clipsigma),
            "flag1": str(self.flag1),
            "flag2": str(self.flag2),
            "filename": self.filename,
        }


def _short(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4g}"
