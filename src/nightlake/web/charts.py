"""Vega-Lite specs of the pages' charts, built from query rows; the browser draws them.

Each :class:`Chart` carries its spec, the number of data marks it must draw (one per row
with a value: rows without one are left out here, so the count is exact) and the CSS
selector of those marks in Vega's SVG, for the page's ``data-marks`` contract.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nightlake.web.settings import Threshold

#: Vega's SVG: each symbol (point) of a data layer is a ``path`` in ``g.mark-symbol.role-mark``.
SYMBOLS = "g.mark-symbol.role-mark > path"
RECTS = "g.mark-rect.role-mark > path"
LEVEL_COLOURS = {"ok": "#2ca02c", "warn": "#ff9f1c", "bad": "#d62728"}
WIDTH = 640
#: pixels between the data and a chart's edges, so a mark at either end is not cut by an axis
EDGE = 12
#: pixels kept for the y labels of stacked charts, so their time axes line up
Y_LABELS = 44


@dataclass(frozen=True)
class Chart:
    """A chart of a page: ``name`` (``data-chart``), its Vega-Lite spec, its mark count."""

    name: str
    title: str
    spec: dict[str, Any]
    marks: int
    mark_selector: str


def _value(v: Any) -> Any:
    """A row value as JSON for Vega: times as UTC ISO strings, non-finite floats dropped."""
    if isinstance(v, dt.datetime):
        return v.isoformat() + ("Z" if v.tzinfo is None else "")
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _values(rows: Sequence[dict[str, Any]], keep: Sequence[str]) -> list[dict[str, Any]]:
    return [{k: _value(r.get(k)) for k in keep} for r in rows]


def _level_colour() -> dict[str, Any]:
    return {
        "field": "level",
        "type": "nominal",
        "title": "level",
        "scale": {"domain": list(LEVEL_COLOURS), "range": list(LEVEL_COLOURS.values())},
    }


def _rules(threshold: Threshold) -> dict[str, Any]:
    return {
        "data": {
            "values": [
                {"at": threshold.warn, "level": "warn"},
                {"at": threshold.bad, "level": "bad"},
            ]
        },
        "mark": {"type": "rule", "strokeDash": [4, 4], "opacity": 0.7},
        "encoding": {"y": {"field": "at", "type": "quantitative"}, "color": _level_colour()},
    }


def _points(
    size: int, x: dict[str, Any], y: str, label: str, colour: dict, tooltip: list
) -> dict[str, Any]:
    """The mark and encoding of a chart of linked points over time (UTC): ``x`` the time
    field, title and axis; ``y`` the value field, titled ``label``; each point's ``href``."""
    return {
        "mark": {"type": "point", "filled": True, "size": size, "cursor": "pointer"},
        "encoding": {
            "x": {"type": "temporal", "scale": {"type": "utc", "padding": EDGE}, **x},
            "y": {
                "field": y,
                "type": "quantitative",
                "title": label,
                "scale": {"zero": False, "padding": EDGE},
                "axis": {"minExtent": Y_LABELS},
            },
            "color": colour,
            "href": {"field": "href"},
            "tooltip": tooltip,
        },
    }


def nights_chart(
    name: str,
    title: str,
    rows: Sequence[dict[str, Any]],
    field: str,
    label: str,
    threshold: Threshold,
    levels: dict[str, str],
) -> Chart:
    """One point per night with a value of ``field``, coloured by its level (``levels``, by
    night: the nights table's); a click opens the night. The warn and bad thresholds are
    dashed rules."""
    shown = [r for r in rows if _value(r.get(field)) is not None]
    values = [
        {
            "night": r["night"],
            "date": f"{r['night'][:4]}-{r['night'][4:6]}-{r['night'][6:8]}",
            "value": r[field],
            "level": levels[r["night"]],
            "images": r["images"],
            "visits": r["visits"],
            "targets": r["targets"],
            "href": f"/night/{r['night']}",
        }
        for r in shown
    ]
    points = {
        "data": {"values": values},
        **_points(
            80,
            {"field": "date", "title": "night"},
            "value",
            label,
            _level_colour(),
            [
                {"field": "night"},
                {"field": "value", "title": label, "format": ".3f"},
                {"field": "images"},
                {"field": "visits"},
                {"field": "targets"},
            ],
        ),
    }
    spec = {
        "width": WIDTH,
        "height": 180,
        "layer": [points, _rules(threshold)],
    }
    return Chart(name, title, spec, len(values), SYMBOLS)


def visits_chart(
    name: str, title: str, night: str, rows: Sequence[dict[str, Any]], field: str, label: str
) -> Chart:
    """One point per visit of the night with a value of ``field`` against time, coloured by
    band; a click filters the image table to that visit."""
    shown = [r for r in rows if _value(r.get(field)) is not None]
    values = _values(shown, ["visit", "band", "target", "obs_time", "images", field])
    for v in values:
        v["href"] = f"/night/{night}?f.visit={v['visit']}#images"
    spec = {
        "width": WIDTH,
        "height": 160,
        "data": {"values": values},
        **_points(
            70,
            # UTC: the scale is utc
            {"field": "obs_time", "title": "time (UTC)", "axis": {"format": "%H:%M"}},
            field,
            label,
            {"field": "band", "type": "nominal", "title": "band"},
            [
                {"field": "visit"},
                {"field": "band"},
                {"field": "target"},
                {
                    "field": "obs_time",
                    "type": "temporal",
                    "format": "%H:%M:%S",
                    "scale": {"type": "utc"},
                },
                {"field": field, "title": label, "format": ".3f"},
            ],
        ),
    }
    return Chart(name, title, spec, len(values), SYMBOLS)


def focal_plane_chart(night: str, rows: Sequence[dict[str, Any]], field: str, label: str) -> Chart:
    """One rectangle per detector where its corners lie relative to the pointing (east to
    the left, as on the sky), coloured by ``field``; a click filters the image table."""
    keep = ["detector", "x_min_deg", "x_max_deg", "y_min_deg", "y_max_deg", "images", field]
    shown = [r for r in rows if all(_value(r.get(k)) is not None for k in keep[1:5] + [field])]
    values = _values(shown, keep)
    for v in values:
        v["href"] = f"/night/{night}?f.detector={v['detector']}#images"
        v["x_mid"] = (v["x_min_deg"] + v["x_max_deg"]) / 2
        v["y_mid"] = (v["y_min_deg"] + v["y_max_deg"]) / 2
    x = {"type": "quantitative", "title": "east offset (deg)", "scale": {"reverse": True}}
    y = {"type": "quantitative", "title": "north offset (deg)"}
    rects = {
        "mark": {"type": "rect", "stroke": "#333", "strokeWidth": 0.5, "cursor": "pointer"},
        "encoding": {
            "x": {"field": "x_min_deg", **x},
            "x2": {"field": "x_max_deg"},
            "y": {"field": "y_min_deg", **y},
            "y2": {"field": "y_max_deg"},
            "color": {
                "field": field,
                "type": "quantitative",
                "title": label,
                "scale": {"scheme": "viridis"},
            },
            "href": {"field": "href"},
            "tooltip": [
                {"field": "detector"},
                {"field": field, "title": label, "format": ".3f"},
                {"field": "images"},
            ],
        },
    }
    # viridis runs from dark purple (low) to yellow (high): white numbers on the dark half
    numbers = [v[field] for v in values]
    mid = (min(numbers) + max(numbers)) / 2 if numbers else 0.0
    labels = {
        "mark": {"type": "text", "fontSize": 10, "fontWeight": "bold"},
        "encoding": {
            "color": {
                "condition": {"test": f"datum[{json.dumps(field)}] < {mid!r}", "value": "#fff"},
                "value": "#111",
            },
            "x": {"field": "x_mid", **x},
            "y": {"field": "y_mid", **y},
            "text": {"field": "detector"},
        },
    }
    spec = {
        "width": 420,
        "height": 420,
        "data": {"values": values},
        "layer": [rects, labels],
    }
    return Chart("focal-plane", f"{label} per detector", spec, len(values), RECTS)


def coverage_chart(rows: Sequence[dict[str, Any]]) -> Chart:
    """The coverage timeline: one square per detrend type and night, coloured by the worst
    rule serving its images (``rule``: the ``coverage_rule`` macro); a click opens the night."""
    from nightlake.detrends.coverage_plot import RULE_COLOURS

    values = []
    for r in rows:
        night = r["night"]
        values.append(
            {
                "type": r["type"],
                "night": night,
                "rule": r["rule"],
                "images": r["images"],
                "exact": r["exact"],
                "recent": r["recent"],
                "none": r["none"],
                "href": f"/night/{night}",
            }
        )
    spec = {
        "width": WIDTH,
        "height": {"step": 28},
        "data": {"values": values},
        "mark": {"type": "square", "size": 160, "cursor": "pointer"},
        "encoding": {
            # one column per night with images: nights a day apart would overlap on a time axis
            "x": {
                "field": "night",
                "type": "ordinal",
                "sort": "ascending",
                "title": "night",
                "axis": {"labelAngle": -45, "labelOverlap": "greedy"},
            },
            "y": {"field": "type", "type": "nominal", "title": "detrend type"},
            "color": {
                "field": "rule",
                "type": "nominal",
                "title": "images served by",
                "scale": {"domain": list(RULE_COLOURS), "range": list(RULE_COLOURS.values())},
            },
            "href": {"field": "href"},
            "tooltip": [
                {"field": "type"},
                {"field": "night"},
                {"field": "images"},
                {"field": "exact"},
                {"field": "recent"},
                {"field": "none"},
            ],
        },
    }
    return Chart("detrend-coverage", "coverage of the images by night", spec, len(values), SYMBOLS)
