"""Detrend resolution: which master bias/dark/flat/fringe/mask applies to a science image.

This module is the Python reference of the precedence rules; ``sql/40_detrends.sql`` writes
the same rules in SQL (``detrend_for``, ``resolve_detrends``) and a property test holds the
two equal. The rules, in words (``docs/detrends.md`` has the long form):

- A *candidate* has the requested type and the image's CCD; flats and fringes also need the
  image's filter (the record's filter name equals the image's physical ``filter`` or its
  ``band``); bias and mask ignore the filter; darks group by exposure time instead. A record
  whose range is empty (``tstop <= tstart``) is never a candidate.
- Validity is the half-open range ``[tstart, tstop)`` in Unix seconds; ``tstop`` with all bits
  set is open-ended.
- **exact**: among candidates whose range covers the image time the latest ``treg`` wins;
  equal ``treg``: the later record in the file.
- **recent**: the exact answer if there is one; otherwise the candidate with the latest
  ``tstop`` at or before the image time (ties: ``treg``, then file order). A record that
  starts after the image time is never chosen.
- **darks**: the time rule picks one record per dark exposure time; the exposure time nearest
  to the image's wins (tie: the longer); ``scale = image exptime / dark exptime``.

Times of images are integer microseconds since the Unix epoch (what a DuckDB ``TIMESTAMP``
holds); records hold whole seconds, so every comparison only needs the image time floored to
the second, and is exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nightlake.detrends.detreg.record import OPEN_ENDED, TYPE_CODES
from nightlake.detrends.times import iso_utc_us

if TYPE_CHECKING:
    import os
    from datetime import datetime

    import numpy as np

    from nightlake.query.lake import Lake

DETREND_TYPES = tuple(TYPE_CODES)
MODES = ("exact", "recent")
FILTERED_TYPES = ("flat", "fringe")  # types matched on the image's filter


@dataclass(frozen=True)
class Image:
    """What resolution needs to know about a science image (one CCD of it)."""

    ccd: int | None
    time_us: int | None  # Unix microseconds, UTC
    filter: str | None = None  # physical filter name, e.g. 'VR DECam c0007 6300.0 2600.0'
    band: str | None = None  # short band name, e.g. 'VR'
    exptime: float | None = None  # seconds
    name: str | None = None  # where the image came from, for messages

    @property
    def time_s(self) -> int | None:
        """The image time floored to whole seconds (all comparisons with records use this)."""
        return None if self.time_us is None else self.time_us // 1_000_000

    @property
    def iso_time(self) -> str:
        return iso_utc_us(self.time_us) if self.time_us is not None else "an unknown time"


@dataclass(frozen=True)
class Choice:
    """The record chosen for an image: its index in file order, the rule, the dark scale."""

    index: int
    rule: str  # 'exact' (the range covers the image time) or 'recent' (the fallback)
    scale: float | None = None  # darks: image exptime / dark exptime


def describe_request(detrend_type: str, image: Image, mode: str) -> str:
    """'flat for ccd 5, filter r at 2019-04-02T05:13:00Z (exact mode)': for not-found messages."""
    what = f"{detrend_type} for ccd {image.ccd}"
    if detrend_type in FILTERED_TYPES:
        what += f", filter {image.filter}"
    elif detrend_type == "dark":
        what += f", exptime {image.exptime:g}" if image.exptime is not None else ", exptime unknown"
    return f"{what} at {image.iso_time} ({mode} mode)"


class Resolver:
    """The reference rules over one database's records, for many images.

    ``records`` is the structured array of :func:`nightlake.detrends.detreg.read_db` (fields tstart,
    tstop, treg, type, filter, ccd, …); ``filters`` maps filter codes to names.
    """

    def __init__(self, records: np.ndarray, filters: Mapping[int, str]) -> None:
        import numpy as np

        self.records = records
        self.filters = {int(code): str(name) for code, name in filters.items()}
        self._tstart = np.asarray(records["tstart"], dtype=np.uint64)
        self._tstop = np.asarray(records["tstop"], dtype=np.uint64)
        self._treg = np.asarray(records["treg"], dtype=np.uint64)
        self._type = np.asarray(records["type"], dtype=np.int64)
        self._filter = np.asarray(records["filter"], dtype=np.int64)
        self._ccd = np.asarray(records["ccd"], dtype=np.int64)
        self._index = np.arange(len(records), dtype=np.int64)
        self._nonempty = self._tstop > self._tstart
        self._codes_by_name: dict[str, list[int]] = {}
        for code, name in self.filters.items():
            self._codes_by_name.setdefault(name, []).append(code)

    def candidates(self, detrend_type: str, image: Image) -> np.ndarray:
        """Boolean mask of the records of the right type, CCD and filter (time not applied)."""
        import numpy as np

        if detrend_type not in TYPE_CODES:
            raise ValueError(f"unknown detrend type {detrend_type!r}")
        if image.ccd is None:
            return np.zeros(len(self._type), dtype=bool)
        mask = (
            (self._type == TYPE_CODES[detrend_type])
            & (self._ccd == int(image.ccd))
            & self._nonempty
        )
        if detrend_type in FILTERED_TYPES:
            codes = [
                c
                for name in {image.filter, image.band}
                if name is not None
                for c in self._codes_by_name.get(name, ())
            ]
            mask &= np.isin(self._filter, codes)
        return mask

    def choose(self, detrend_type: str, image: Image, mode: str = "exact") -> Choice | None:
        """The record the rules choose for ``image``, or ``None`` when there is none."""
        import numpy as np

        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (expected exact or recent)")
        t = image.time_s
        if t is None or t < 0 or t >= OPEN_ENDED:
            return None
        if detrend_type == "dark" and image.exptime is None:
            return None
        t64 = np.uint64(t)
        mask = self.candidates(detrend_type, image) & (self._tstart <= t64)
        covers = mask & (t64 < self._tstop)
        ended = mask & (self._tstop <= t64) if mode == "recent" else None

        if detrend_type == "dark":
            groups = np.unique(self._filter[mask])
        else:
            groups = [None]
        winners: list[tuple[int, str, int | None]] = []
        for group in groups:
            in_group = True if group is None else (self._filter == group)
            pick = self._latest(covers & in_group, by_tstop=False)
            rule = "exact"
            if pick is None and ended is not None:
                pick = self._latest(ended & in_group, by_tstop=True)
                rule = "recent"
            if pick is not None:
                winners.append((pick, rule, None if group is None else int(group)))
        if not winners:
            return None
        if detrend_type != "dark":
            index, rule, _ = winners[0]
            return Choice(index, rule)
        exptime = float(image.exptime)
        index, rule, dark_exptime = min(winners, key=lambda w: (abs(w[2] - exptime), -w[2]))
        scale = exptime / dark_exptime if dark_exptime != 0 else None
        return Choice(index, rule, scale)

    def _latest(self, mask: np.ndarray, *, by_tstop: bool) -> int | None:
        """Index of the winner among ``mask``: max (tstop,) treg, then the later record."""
        import numpy as np

        idx = self._index[mask]
        if idx.size == 0:
            return None
        keys = [idx, self._treg[idx]] + ([self._tstop[idx]] if by_tstop else [])
        return int(idx[np.lexsort(keys)[-1]])


def write_assignments(
    lake: Lake,
    detrend_type: str,
    mode: str,
    output: str | os.PathLike[str],
    *,
    as_of: datetime | None = None,
    db: str | os.PathLike[str] | None = None,
) -> tuple[int, int]:
    """``resolve_detrends(type, mode)`` over the whole lake, written atomically to Parquet.

    With ``as_of`` the records are the database's as of that time, replayed from its journal
    (``db``, else the lake's database: :func:`nightlake.detrends.history.lake_db`). The file's
    kv metadata (``nightlake.resolve``) holds the provenance that ``nightlake verify`` derives
    the answer again from (:mod:`nightlake.detrends.provenance`). Returns (rows, rows with a
    detrend).
    """
    from pathlib import Path

    from nightlake.detrends.provenance import resolve_table
    from nightlake.lake import write_parquet_atomic

    table, _ = resolve_table(lake, detrend_type, mode, as_of=as_of, db=db)
    write_parquet_atomic(table, Path(output))
    found = table.num_rows - table.column("detrend_index").null_count
    return table.num_rows, found


def resolve_metadata(lake: Lake, detrend_type: str, mode: str) -> dict[bytes, bytes]:
    """The ``nightlake.resolve`` kv metadata of a resolve output (local file or Dask parts):
    the provenance of an answer from the lake's mirror (:mod:`nightlake.detrends.provenance`)."""
    from nightlake.detrends.provenance import KEY, metadata, mirror_record

    return metadata(KEY, mirror_record(lake, detrend_type, mode))
