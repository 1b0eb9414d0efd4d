"""The survey at a glance: nightly FWHM and zero point, and per-detector medians (PNG).

Drawn with matplotlib's object API on an Agg canvas (no display, no global pyplot state).
Layout of the figure::

    +--------------------------+--------------------------+
    | median FWHM vs night     | median zero point vs     |  legend:
    | (p10-p90 bars, a colour  | night (a colour per      |  one entry
    | per target)              | target)                  |  per target
    +--------------------------+--------------------------+
    | per-detector median FWHM, bars in DECam focal-plane  |
    | order (rows north to south), row boundaries marked   |
    +-----------------------------------------------------+
    | per-detector median zero point, same order          |
    +-----------------------------------------------------+
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

# DECam CCDs by focal-plane row, top (north, N29-N31) to bottom (south, S29-S31), as
# (name, CCDNUM). CCDNUM is the LSST/DEEP ``detector``.
DECAM_ROWS: list[list[tuple[str, int]]] = [
    [("N29", 60), ("N30", 61), ("N31", 62)],
    [("N25", 56), ("N26", 57), ("N27", 58), ("N28", 59)],
    [("N20", 51), ("N21", 52), ("N22", 53), ("N23", 54), ("N24", 55)],
    [("N14", 45), ("N15", 46), ("N16", 47), ("N17", 48), ("N18", 49), ("N19", 50)],
    [("N8", 39), ("N9", 40), ("N10", 41), ("N11", 42), ("N12", 43), ("N13", 44)],
    [("N1", 32), ("N2", 33), ("N3", 34), ("N4", 35), ("N5", 36), ("N6", 37), ("N7", 38)],
    [("S1", 25), ("S2", 26), ("S3", 27), ("S4", 28), ("S5", 29), ("S6", 30), ("S7", 31)],
    [("S8", 19), ("S9", 20), ("S10", 21), ("S11", 22), ("S12", 23), ("S13", 24)],
    [("S14", 13), ("S15", 14), ("S16", 15), ("S17", 16), ("S18", 17), ("S19", 18)],
    [("S20", 8), ("S21", 9), ("S22", 10), ("S23", 11), ("S24", 12)],
    [("S25", 4), ("S26", 5), ("S27", 6), ("S28", 7)],
    [("S29", 1), ("S30", 2), ("S31", 3)],
]
_FOCAL_PLANE = {
    ccd: (row, pos, name)
    for row, ccds in enumerate(DECAM_ROWS)
    for pos, (name, ccd) in enumerate(ccds)
}


def focal_plane_order(detectors: list[int]) -> list[int]:
    """``detectors`` sorted by DECam focal-plane row, then position; unknown ids last."""
    return sorted(detectors, key=lambda d: _FOCAL_PLANE.get(d, (len(DECAM_ROWS), d, ""))[:2])


def detector_label(detector: int) -> str:
    """``N4 (35)`` for a DECam CCDNUM, else the number."""
    name = _FOCAL_PLANE.get(detector, (None, None, None))[2]
    return f"{name} ({detector})" if name else str(detector)


def plot_survey(
    nightly: pa.Table, detectors: pa.Table, path: str | os.PathLike[str], *, title: str
) -> Path:
    """Draw the survey figure from ``nightly_stats()`` and ``detector_stats()`` to a PNG.

    The file is written beside ``path`` and renamed into place.
    """
    from matplotlib.figure import Figure

    from nightlake.files import atomic_replace

    fig = Figure(figsize=(13, 10), dpi=100, layout="constrained")
    grid = fig.add_gridspec(3, 2, height_ratios=[1.2, 1, 1])
    ax_fwhm = fig.add_subplot(grid[0, 0])
    ax_zp = fig.add_subplot(grid[0, 1], sharex=ax_fwhm)
    ax_det_fwhm = fig.add_subplot(grid[1, :])
    ax_det_zp = fig.add_subplot(grid[2, :], sharex=ax_det_fwhm)
    _draw_nights(fig, ax_fwhm, ax_zp, nightly.to_pylist())
    _draw_detectors(ax_det_fwhm, ax_det_zp, detectors.to_pylist())
    fig.suptitle(title, fontsize="large", fontweight="bold")

    target_path = Path(path)
    with atomic_replace(target_path) as tmp:
        fig.savefig(tmp, format="png")
    return target_path


def _draw_nights(fig, ax_fwhm, ax_zp, rows: list[dict]) -> None:
    """The top panels: FWHM and zero point per night, a colour and marker per target."""
    # Nights on an even, categorical axis: a survey observes in bursts years apart, and a
    # date axis would squash each burst into one column of markers.
    nights = sorted({r["night"] for r in rows})
    index = {n: i for i, n in enumerate(nights)}
    targets = sorted({r["target"] for r in rows})
    markers = "os^Dv<>p"
    handles = []
    for i, (target, colour) in enumerate(zip(targets, _colours(len(targets)))):
        mine = [r for r in rows if r["target"] == target]
        # spread the targets of one night a little sideways so their markers do not hide
        dodge = (i - (len(targets) - 1) / 2) * min(0.12, 0.7 / max(len(targets), 1))
        x = [index[r["night"]] + dodge for r in mine]
        style = {"fmt": markers[(i // 20) % len(markers)], "color": colour, "label": target}
        handles.append(_draw_target(ax_fwhm, ax_zp, x, mine, style))
    ax_fwhm.set_title("Seeing per night (median, bars: 10th-90th percentile)")
    ax_fwhm.set_ylabel("FWHM [arcsec]")
    ax_zp.set_title("Photometric zero point per night (median)")
    ax_zp.set_ylabel("zero point [mag]")
    step = max(1, -(-len(nights) // 24))  # at most ~24 night labels
    for ax in (ax_fwhm, ax_zp):
        ax.set_xlabel("night (local evening, YYYYMMDD)")
        ax.grid(alpha=0.3)
        ax.set_xticks(range(0, len(nights), step), nights[::step], rotation=60, fontsize="x-small")
        ax.set_xlim(-0.7, max(len(nights) - 0.3, 0.7))
    if targets:
        fig.legend(
            handles,
            targets,
            title="target",
            loc="outside right upper",
            fontsize="small",
            ncols=max(1, -(-len(targets) // 40)),
        )


def _draw_target(ax_fwhm, ax_zp, x: list[float], rows: list[dict], style: dict):
    """One target's nights: FWHM with its p10-p90 bars, and zero point; returns the legend
    handle."""
    import numpy as np

    fwhm = np.array([_nan(r["fwhm_median_arcsec"]) for r in rows])
    low = fwhm - np.array([_nan(r["fwhm_p10_arcsec"]) for r in rows])
    high = np.array([_nan(r["fwhm_p90_arcsec"]) for r in rows]) - fwhm
    handle = ax_fwhm.errorbar(x, fwhm, yerr=[low, high], ms=5, capsize=2, elinewidth=0.8, **style)
    ax_zp.plot(
        x,
        [_nan(r["zero_point_median"]) for r in rows],
        style["fmt"],
        color=style["color"],
        ms=5,
        linestyle="none",
        label=style["label"],
    )
    return handle


def _draw_detectors(ax_det_fwhm, ax_det_zp, rows: list[dict]) -> None:
    """The lower panels: per-detector medians as bars in focal-plane order, rows marked."""
    import numpy as np

    det_rows = {r["detector"]: r for r in rows}
    order = focal_plane_order(list(det_rows))
    positions = np.arange(len(order))
    row_of = [_FOCAL_PLANE.get(d, (len(DECAM_ROWS),))[0] for d in order]
    shade = ["#4c72b0" if r % 2 == 0 else "#55a868" for r in row_of]
    for ax, key, label, name in (
        (ax_det_fwhm, "fwhm_median_arcsec", "median FWHM [arcsec]", "Seeing per detector"),
        (ax_det_zp, "zero_point_median", "median zero point [mag]", "Zero point per detector"),
    ):
        values = np.array([_nan(det_rows[d][key]) for d in order])
        ax.bar(positions, values, color=shade, width=0.8)
        finite = values[np.isfinite(values)]
        if finite.size:
            span = max(float(finite.max() - finite.min()), 1e-3)
            ax.set_ylim(float(finite.min()) - 0.5 * span, float(finite.max()) + 0.3 * span)
        for i in range(1, len(order)):
            if row_of[i] != row_of[i - 1]:
                ax.axvline(i - 0.5, color="grey", lw=0.6, ls=":")
        ax.set_ylabel(label)
        ax.set_title(
            f"{name} (DECam focal-plane order, north to south; colour alternates by CCD row)"
        )
        ax.grid(axis="y", alpha=0.3)
    ax_det_zp.set_xticks(
        positions, [detector_label(d) for d in order], rotation=90, fontsize="x-small"
    )
    ax_det_zp.set_xlabel("detector (CCD name and number)")
    ax_det_fwhm.tick_params(axis="x", labelbottom=False)


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


def _colours(n: int) -> list:
    """Distinct colours: tab10, else tab20 + tab20b (40), else evenly spaced hues."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 40:
        palette = [colormaps["tab20"](i) for i in range(20)]
        palette += [colormaps["tab20b"](i) for i in range(20)]
        return palette[:n]
    return [colormaps["hsv"](i / n) for i in range(n)]
