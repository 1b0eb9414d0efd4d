"""The coverage picture of ``nightlake audit --plot``: where the detrends cover the images.

Drawn with matplotlib's object API on an Agg canvas (no display, no global pyplot state), one
panel per detrend type, time on x::

    +-- flat ------------------------------------------------------------+
    | g   ▁▁▆▆▆██████▆▆▁▁      ███     share of CCDs with an exact winner  |  legend
    |     | | |  |   |  |   |        ticks: nights with images, coloured   |
    | r   ...                          exact / recent / none               |
    +--------------------------------------------------------------------+

With ``ccd``, each panel shows that CCD's records instead, one row each under its filter
class: the validity range pale and hatched, the spans where the record wins solid.
Which record wins is asked of ``resolve_detrends`` (the probes of ``sql/46_audit.sql``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from nightlake.detrends.audit import _probe_winners

if TYPE_CHECKING:
    import duckdb

RULE_COLOURS = {"exact": "#2ca02c", "recent": "#ff7f0e", "none": "#d62728"}
_WIN = "#1f77b4"

# The class labels are detrend_class's (sql/46_audit.sql), so the rows of records and of nights
# meet: a record's band is the first word of its filter name (filter_band).
_RECORDS = """
SELECT record_index, ccd,
       coalesce(detrend_class($type, filter, filter_band(filter), dark_exptime), '?') AS cls,
       tstart, tstop
FROM detrends WHERE type = $type AND tstop_s > tstart_s
ORDER BY record_index
"""

_SEGMENTS = """
SELECT detector,
       coalesce(detrend_class($type, filter, filter_band(filter), exposureTime), '?') AS cls,
       obs_time AS b,
       lead(obs_time) OVER (PARTITION BY detector, filter, exposureTime ORDER BY obs_time) AS e,
       detrend_index
FROM _nl_winners WHERE mode = 'exact'
"""

_NIGHTS = """
SELECT night::VARCHAR AS night, detector AS ccd,
       coalesce(detrend_class($type, filter, band, exposureTime), '?') AS cls,
       min(obs_time) AS t,
       coverage_rule(count(*) FILTER (WHERE detrend_rule = 'recent'),
                     count(*) FILTER (WHERE detrend_rule IS NULL)) AS rule
FROM resolve_detrends($type, mode := $mode)
WHERE obs_time IS NOT NULL AND ($ccd IS NULL OR detector = $ccd)
GROUP BY ALL
"""


def _panel_data(con: duckdb.DuckDBPyConnection, detrend_type: str, mode: str, ccd: int | None):
    """Records, winning segments and nights with images of one type, as Python rows."""
    _probe_winners(con, detrend_type, "detrends")
    records = con.execute(_RECORDS, {"type": detrend_type}).fetchall()
    segments = con.execute(_SEGMENTS, {"type": detrend_type}).fetchall()
    nights = con.execute(_NIGHTS, {"type": detrend_type, "mode": mode, "ccd": ccd}).fetchall()
    return records, segments, nights


def plot_coverage(
    con: duckdb.DuckDBPyConnection,
    path: str | os.PathLike[str],
    types: list[str],
    mode: str,
    *,
    ccd: int | None = None,
    title: str,
) -> Path:
    """Draw the coverage picture of ``types`` to a PNG (written beside, renamed into place)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from nightlake.files import atomic_replace

    panels = [(t, *_panel_data(con, t, mode, ccd)) for t in types]
    heights = [max(1.2, 0.45 * _rows(p, ccd)) for p in panels]
    fig = Figure(figsize=(13, 1.6 + sum(heights)), dpi=100, layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False, height_ratios=heights)[:, 0]
    end = _latest(panels)
    for ax, (detrend_type, records, segments, nights) in zip(axes, panels):
        if ccd is None:
            _draw_shares(ax, detrend_type, records, segments, nights, end)
        else:
            _draw_records(ax, detrend_type, records, segments, nights, ccd, end)
    axes[-1].set_xlabel("time (UTC)")
    if ccd is None:
        handles = [Patch(color=_WIN, alpha=0.8, label="exact detrend (height: share of CCDs)")]
    else:
        handles = [
            Patch(color=_WIN, alpha=0.85, label="record wins (exact)"),
            Patch(facecolor=_WIN, alpha=0.2, hatch="///", label="record valid, another wins"),
        ]
    handles += [
        Patch(color=c, label=f"night with images: {rule}") for rule, c in RULE_COLOURS.items()
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize="small")
    fig.suptitle(title, fontsize="large", fontweight="bold")
    target = Path(path)
    with atomic_replace(target) as tmp:
        fig.savefig(tmp, format="png")
    return target


def _rows(panel, ccd: int | None) -> int:
    detrend_type, records, _segments, nights = panel
    if ccd is None:
        return len(_classes(detrend_type, records, nights))
    mine = [r for r in records if r[1] == ccd]
    classes = _classes(detrend_type, mine, nights)
    return len(classes) + sum(
        len(_lanes([r for r in mine if r[2] == c], datetime.max)) for c in classes
    )


def _classes(detrend_type: str, records, nights) -> list[str]:
    found = {r[2] for r in records} | {n[2] for n in nights}
    return sorted(found, key=_class_order)


def _class_order(label: str):
    try:
        return (0, float(label.split()[0]), label)
    except ValueError:
        return (1, 0.0, label)


def _latest(panels) -> datetime:
    """The right end of open-ended spans: a little after the last time anything happens."""
    times = [r[3] for p in panels for r in p[1]] + [n[3] for p in panels for n in p[3]]
    times += [r[4] for p in panels for r in p[1] if r[4] is not None]
    last = max(times, default=datetime(2020, 1, 1))
    first = min(times, default=last)
    return last + max((last - first) * 0.03, timedelta(days=1))


def _night_ticks(ax, nights, y_of, height: float) -> None:
    for rule, colour in RULE_COLOURS.items():
        xs = [n[3] for n in nights if n[4] == rule and n[2] in y_of]
        ys = [y_of[n[2]] - height for n in nights if n[4] == rule and n[2] in y_of]
        if xs:
            ax.plot(xs, ys, "|", color=colour, ms=9, mew=1.5, zorder=3)


def _draw_shares(ax, detrend_type, records, segments, nights, end) -> None:
    """Per filter class: the share of CCDs with an exact winner over time, nights below."""
    classes = _classes(detrend_type, records, nights)
    y_of = {c: i for i, c in enumerate(classes)}
    ccds = {r[1] for r in records} | {n[1] for n in nights}
    events: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    for _detector, label, b, e, winner in segments:
        if winner is None:
            continue
        events[label][b] += 1
        events[label][e if e is not None else end] -= 1
    for label, steps in events.items():
        level, xs, shares = 0, [], []
        for t in sorted(steps):
            level += steps[t]
            xs.append(t)
            shares.append(min(level / max(len(ccds), 1), 1.0))
        y = y_of[label]
        ax.fill_between(
            xs,
            [y - 0.3] * len(xs),
            [y - 0.3 + 0.7 * s for s in shares],
            step="post",
            color=_WIN,
            alpha=0.8,
            lw=0,
        )
    _night_ticks(ax, nights, y_of, 0.38)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_ylim(-0.6, len(classes) - 0.3)
    ax.set_title(
        f"{detrend_type}: share of the {len(ccds)} CCDs with an exact {detrend_type}, per "
        "filter class; ticks: nights with images",
        loc="left",
        fontsize="medium",
    )
    ax.grid(axis="x", alpha=0.3)
    if not classes:
        ax.text(
            0.5,
            0.5,
            f"no {detrend_type} records and no images",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="grey",
        )


def _lanes(records, end) -> list[list]:
    """Records packed into rows, a record on the first row it overlaps nothing in."""
    lanes: list[list] = []
    ends: list = []
    for r in sorted(records, key=lambda r: (r[3], r[0])):
        stop = r[4] if r[4] is not None else end
        for k, last in enumerate(ends):
            if last <= r[3]:
                lanes[k].append(r)
                ends[k] = stop
                break
        else:
            lanes.append([r])
            ends.append(stop)
    return lanes


def _draw_records(ax, detrend_type, records, segments, nights, ccd, end) -> None:
    """The records of ``ccd`` by filter class, overlapping ones on extra rows: range
    hatched, the spans where the record wins solid."""
    mine = [r for r in records if r[1] == ccd]
    wins: dict[int, list] = defaultdict(list)
    for detector, _cls, b, e, winner in segments:
        if detector == ccd and winner is not None:
            wins[winner].append((b, e if e is not None else end))
    labels, y_of, y = [], {}, 0
    for cls in _classes(detrend_type, mine, nights):
        y_of[cls] = y
        labels.append(f"{cls}: images")
        y += 1
        lanes = _lanes([r for r in mine if r[2] == cls], end)
        for k, lane in enumerate(lanes):
            for r in lane:
                start, stop = r[3], r[4] if r[4] is not None else end
                ax.barh(
                    y,
                    stop - start,
                    left=start,
                    height=0.6,
                    color=_WIN,
                    alpha=0.2,
                    hatch="///",
                    edgecolor=_WIN,
                    lw=0,
                )
                for b, e in wins.get(r[0], []):
                    ax.barh(y, e - b, left=b, height=0.6, color=_WIN, alpha=0.85, lw=0)
            labels.append(f"{cls} records" if k == 0 else f"{cls} overlapping ({k + 1})")
            y += 1
    _night_ticks(ax, nights, y_of, 0.0)
    ax.set_yticks(range(len(labels)), labels, fontsize="x-small")
    ax.set_ylim(len(labels) - 0.4, -0.6)
    ax.set_title(
        f"{detrend_type}, CCD {ccd}: each record's validity (hatched) and where it wins (solid)",
        loc="left",
        fontsize="medium",
    )
    ax.grid(axis="x", alpha=0.3)
