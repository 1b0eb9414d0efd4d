"""detsearch's search: the records a request selects, and the choice for each image.

The command line around it is :mod:`nightlake.cli.detsearch` (argparse, fast start-up). This
module loads numpy only when called, and never typer, duckdb, pyarrow or astropy.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from nightlake.detrends.detreg.record import TYPE_CODES, DetRegRecord
from nightlake.detrends.rules import Choice, Image
from nightlake.errors import InputError


def record(db, index: int) -> DetRegRecord:
    """Record ``index`` of ``db`` (its raw records: no pyarrow, no copy of the file)."""
    return DetRegRecord.from_raw(db.raw_records[index], db.filters, index)


def search(
    db, images: Sequence[Image], detrend_type: str, mode: str = "exact"
) -> list[Choice | None]:
    """The choice for each image (one pass over the database's records, read once)."""
    from nightlake.detrends.rules import Resolver

    resolver = Resolver(db.raw_records, db.filters)
    return [resolver.choose(detrend_type, image, mode) for image in images]


def list_records(
    db,
    *,
    detrend_type: str | None = None,
    ccd: int | None = None,
    filter: str | None = None,
    exptime: float | None = None,
    time_us: int | None = None,
    trange: tuple[int, int] | None = None,
) -> list[int]:
    """Indices of the records matching every given condition, in file order.

    ``filter`` matches a record's filter name or its first word (the band); for darks it is
    compared with the dark exposure time. ``time_us``: the validity covers it; ``trange``
    (µs, half-open): the validity overlaps it.
    """
    import numpy as np

    from nightlake.detrends.images import band_of

    rec = db.raw_records
    mask = np.ones(len(rec), dtype=bool)
    if detrend_type is not None:
        mask &= rec["type"] == TYPE_CODES[detrend_type]
    if ccd is not None:
        mask &= rec["ccd"] == ccd
    if filter is not None:
        codes = [c for c, name in db.filters.items() if filter in (name, band_of(name))]
        is_dark = rec["type"] == TYPE_CODES["dark"]
        named = np.isin(rec["filter"], codes) & ~is_dark
        try:
            named |= is_dark & (rec["filter"] == float(filter))
        except ValueError:
            pass
        mask &= named
    if exptime is not None:
        mask &= (rec["type"] == TYPE_CODES["dark"]) & (rec["filter"] == exptime)
    tstart = rec["tstart"].astype(np.uint64)
    tstop = rec["tstop"].astype(np.uint64)
    if time_us is not None:
        t = np.uint64(max(time_us // 1_000_000, 0))
        mask &= (tstart <= t) & (t < tstop)
    if trange is not None:
        lo, hi = (max(v, 0) for v in trange)
        # [tstart, tstop) overlaps [lo, hi) µs: tstart*1e6 < hi and lo < tstop*1e6
        mask &= (tstart < np.uint64(-(-hi // 1_000_000))) & (np.uint64(lo // 1_000_000) < tstop)
    return [int(i) for i in np.flatnonzero(mask)]


def expand_images(tokens: Iterable[str]) -> tuple[list[str], int | None, str | None]:
    """Image paths (``@LIST`` expanded), plus an Elixir-style CCD number and layout."""
    images: list[str] = []
    ccd = layout = None
    for token in tokens:
        if token.startswith("@"):
            listing = token[1:]
            try:
                lines = Path(listing).read_text().splitlines()
            except OSError as exc:
                raise InputError(listing, exc.strerror or str(exc)) from exc
            images += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        elif images and token.isdigit() and not os.path.exists(token):
            ccd = int(token)
        elif images and token in ("split", "mef") and not os.path.exists(token):
            layout = token
        else:
            images.append(token)
    return images, ccd, layout
