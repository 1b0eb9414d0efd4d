"""Lakes converted from the committed DEEP fixtures, shared by the astro/sky/obscore tests,
and the comparison of an astropy table with its round trip through a lake."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from astropy.table import Table
from astropy.time import Time

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "data" / "fixtures"
#: the real survey tables beside the checkout (../shared/data), or where the variable says
#: (a git worktree sits deeper than the main checkout)
SHARED_DATA = Path(os.environ.get("NIGHTLAKE_SHARED_DATA") or REPO.parent / "shared" / "data")


def convert_into(lake_dir: Path, *sources: Path) -> Path:
    from nightlake import Lake
    from nightlake.ingest.convert import convert

    report = convert(Lake(lake_dir), [str(s) for s in sources])
    assert not report.failed, report.failed
    return lake_dir


def read_astropy(path: Path) -> Table:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy on masked uint fill values
        return Table.read(path, format="ascii.ecsv")


# -- comparison ------------------------------------------------------------------------------
#: all_types.ecsv row 2 is the leap second 2016-12-31T23:59:60: the lake's timestamps are on a
#: POSIX clock (docs/guide.md), so it comes back as the next day's first instant
LEAP_SECOND = {("when", "2016-12-31T23:59:60.000"): "2017-01-01T00:00:00.000"}


def assert_same_table(original: Table, back: Table, where: str, exceptions: dict) -> None:
    """Equal as astropy reads them, rows in any order (the lake sorts its partitions)."""
    assert back.colnames == original.colnames, where
    assert len(back) == len(original), where
    a_order, b_order = _row_order(original, exceptions), _row_order(back, {})
    for name in original.colnames:
        a, b = original[name][a_order], back[name][b_order]
        context = (where, name)
        if isinstance(a, Time):
            _assert_same_time(a, b, context, exceptions)
            continue
        assert type(a) is type(b), (*context, type(a), type(b))
        assert (a.dtype, a.shape) == (b.dtype, b.shape), (*context, a.dtype, b.dtype)
        assert (a.unit, a.info.description, a.info.format) == (
            b.unit,
            b.info.description,
            b.info.format,
        ), context
        mask = np.ma.getmaskarray(a)
        assert (mask == np.ma.getmaskarray(b)).all(), context
        va, vb = np.asarray(a)[~mask], np.asarray(b)[~mask]
        if a.dtype.kind == "O":
            assert all(_same_object(x, y) for x, y in zip(va, vb)), context
        else:
            assert np.array_equal(va, vb, equal_nan=a.dtype.kind == "f"), context


def _assert_same_time(a: Time, b, context, exceptions: dict) -> None:
    assert isinstance(b, Time), context
    for attr in ("format", "scale", "precision", "in_subfmt", "out_subfmt"):
        assert getattr(a, attr) == getattr(b, attr), (*context, attr)
    mask_a, mask_b = np.ma.getmaskarray(a.value), np.ma.getmaskarray(b.value)
    assert (mask_a == mask_b).all(), context
    expected = [exceptions.get((context[1], str(v)), v) for v in _time_text(a)[~mask_a]]
    assert expected == list(_time_text(b)[~mask_b]), context


def _time_text(t: Time) -> np.ndarray:
    """The values as ECSV writes them (text in the Time's own format and precision)."""
    return np.asarray(np.ma.getdata(t.value)).astype(str)


def _same_object(x, y) -> bool:
    """A JSON value or a variable-length array (same dtype and values)."""
    if isinstance(x, np.ndarray):
        return isinstance(y, np.ndarray) and x.dtype == y.dtype and np.array_equal(x, y)
    return type(x) is type(y) and x == y


def _row_order(table: Table, exceptions: dict) -> list[int]:
    """Row indices sorted by the text of every cell (equal rows are interchangeable)."""
    keys = []
    for name in table.colnames:
        col = table[name]
        if isinstance(col, Time):
            text = [exceptions.get((name, v), v) for v in _time_text(col)]
        else:
            text = [repr(v) for v in col.tolist()]
        keys.append(text)
    rows = list(zip(*keys))
    return sorted(range(len(table)), key=rows.__getitem__)
