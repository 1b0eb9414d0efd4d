"""Independent expectations: astropy's own reading of an ECSV file, cell by cell; the text
table format read back by position."""

from __future__ import annotations

import numpy as np


def astropy_cells(path) -> dict[str, list]:
    """Each column of ``path`` as astropy reads it, in plain Python values (the reference).

    Masked → None, Time → naive UTC datetime, ``subtype: json`` → parsed objects, arrays →
    nested lists.
    """
    import numpy as np
    from astropy.table import Table
    from astropy.time import Time

    table = Table.read(path, format="ascii.ecsv")
    cells = {}
    for name in table.colnames:
        col = table[name]
        if isinstance(col, Time):
            masks = np.broadcast_to(getattr(col, "mask", False), len(col))
            values = [None if m else v for v, m in zip(utc_datetimes(col), masks)]
        else:
            values = [v.tolist() if isinstance(v, np.ndarray) else v for v in col.tolist()]
            mask = getattr(col, "mask", None)
            if mask is not None and np.ndim(mask) == 1:
                values = [None if m else v for v, m in zip(values, mask)]
            elif mask is not None and np.ndim(mask) > 1:
                # masked elements inside arrays: astropy keeps the row, masks the element
                values = np.ma.array(col.data, mask=mask).tolist(None)
        cells[name] = values
    return cells


def utc_datetimes(time) -> list:
    """An astropy Time as naive UTC datetimes, from astropy's own ``isot`` text to the µs."""
    utc = time.utc.copy()
    utc.precision = 6
    text = utc.isot
    text = getattr(text, "unmasked", text)  # a masked Time: the caller masks its cells
    return [_posix_datetime(str(t)) for t in np.atleast_1d(text)]


def _posix_datetime(isot: str):
    """astropy's UTC text as a naive datetime; a leap second 23:59:60.x → next 00:00:00.x."""
    import datetime as dt

    date, clock = isot.split("T")
    hh, mm, ss = clock.split(":")
    whole, _, frac = ss.partition(".")
    base = dt.datetime.fromisoformat(f"{date}T{hh}:{mm}:00")
    return base + dt.timedelta(seconds=int(whole), microseconds=int((frac + "000000")[:6]))


def arrow_cells(table) -> dict[str, list]:
    """The same view of an Arrow table (JSON text parsed, timestamps as datetimes)."""
    import json

    cells = {}
    for f in table.schema:
        values = table.column(f.name).to_pylist()
        if "json" in str(f.type):
            values = [None if v is None else json.loads(v) for v in values]
        cells[f.name] = values
    return cells


def same_cells(a, b) -> bool:
    """Equality that treats NaN as equal to NaN, recursively (lists of floats)."""
    import math

    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_cells(x, y) for x, y in zip(a, b))
    return a == b


def assert_equals_astropy(path, table, ignore=()) -> None:
    """Every cell of the Arrow ``table`` equals astropy's reading of ``path``."""
    ref = astropy_cells(path)
    ours = arrow_cells(table)
    assert [c for c in ours if c not in ignore] == [c for c in ref if c not in ignore]
    for name, expected in ref.items():
        if name in ignore:
            continue
        got = ours[name]
        assert len(got) == len(expected), name
        bad = [(i, g, e) for i, (g, e) in enumerate(zip(got, expected)) if not same_cells(g, e)]
        assert not bad, f"{path}: column {name!r} differs from astropy at rows {bad[:3]}"


def read_table(text: str) -> list[dict[str, str]]:
    """The rows of the ``table`` format read back by position: the rule under the header
    (``-`` runs joined by ``-+-``) gives each column's span; the ``(N rows)`` line is checked."""
    lines = text.splitlines()
    rule = lines[1]
    assert set(rule) <= {"-", "+"}, rule
    spans, start = [], 0
    for plus in [i for i, c in enumerate(rule) if c == "+"] + [len(rule) + 1]:
        spans.append((start, plus - 1))
        start = plus + 2
    names = [lines[0][a:b].strip() for a, b in spans]
    rows = [{n: line[a:b].strip() for n, (a, b) in zip(names, spans)} for line in lines[2:-1]]
    count = len(rows)
    assert lines[-1] == f"({count} row{'s' if count != 1 else ''})", lines[-1]
    return rows
