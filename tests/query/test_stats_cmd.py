"""``nightlake stats`` and ``macros``: the macros through the CLI, and the PNG plot."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from matplotlib.image import imread

from nightlake.query.plot import DECAM_ROWS, focal_plane_order

from .conftest import deep_row, write_lake


@pytest.mark.parametrize(
    "by, macro",
    [
        ("night", "nightly_stats"),
        ("target", "target_stats"),
        ("detector", "detector_stats"),
        ("survey", "survey_stats"),
    ],
)
def test_stats_prints_the_macro(cli, hand_lake, by, macro):
    result = cli("stats", "--lake", hand_lake, "--by", by, "--format", "json")
    assert result.exit_code == 0, result.stderr
    expected = json.loads(
        cli("sql", "--lake", hand_lake, "--format", "json", f"SELECT * FROM {macro}()").stdout
    )
    assert json.loads(result.stdout) == expected


def test_stats_default_is_by_night_and_csv_in_a_pipe(cli, hand_lake):
    rows = list(csv.DictReader(io.StringIO(cli("stats", "--lake", hand_lake).stdout)))
    assert [(r["night"], r["target"]) for r in rows] == [
        ("20190402", "A0a"),
        ("20190402", "B1a"),
        ("20190403", "A0a"),
    ]


def test_stats_unknown_by(cli, hand_lake):
    result = cli("stats", "--lake", hand_lake, "--by", "moon")
    assert result.exit_code == 2 and "unknown --by 'moon'" in result.stderr


def test_focal_plane_order_covers_decam():
    ccds = [ccd for row in DECAM_ROWS for _, ccd in row]
    assert sorted(ccds) == list(range(1, 63))
    assert focal_plane_order([1, 62, 35, 99]) == [62, 35, 1, 99]


def test_plot_renders_a_readable_png(cli, tmp_path):
    rng = np.random.default_rng(3)
    rows = []
    for t, target in enumerate(["A0a", "A0b", "B1a"]):
        for n, night in enumerate(["20190402", "20190403", "20190501", "20190502"]):
            for visit in range(2):
                for det in (1, 5, 28, 35, 47, 62):
                    rows.append(
                        deep_row(
                            target,
                            night,
                            1000 * n + 10 * t + visit,
                            det,
                            psfSigma=float(rng.uniform(1.5, 4)),
                            zeroPoint=float(rng.normal(31, 0.2)),
                        )
                    )
    lake = write_lake(tmp_path / "lake", rows)
    png = tmp_path / "survey.png"
    result = cli("stats", "--lake", lake, "--by", "survey", "--plot", png)
    assert result.exit_code == 0, result.stderr
    assert png.stat().st_size > 20_000
    pixels = imread(png)
    height, width = pixels.shape[:2]
    assert (width, height) == (1300, 1000)
    assert pixels[..., :3].std() > 0.1  # not blank
    # each of the four panels has data drawn in it: coloured pixels (markers, bars), not
    # just black axes and grey grid lines
    rgb = pixels[..., :3]
    coloured = (rgb.max(axis=2) - rgb.min(axis=2)) > 0.25
    for rows_, cols in (
        (slice(60, 300), slice(80, 600)),
        (slice(60, 300), slice(700, 1200)),
        (slice(450, 650), slice(100, 1200)),
        (slice(720, 900), slice(100, 1200)),
    ):
        assert coloured[rows_, cols].mean() > 0.002
    assert coloured[:, 1220:].mean() > 0.001  # the legend of targets on the right
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".png"] == ["survey.png"]


def test_plot_into_a_missing_directory_fails_cleanly(cli, hand_lake, tmp_path):
    result = cli("stats", "--lake", hand_lake, "--plot", tmp_path / "no" / "p.png")
    assert result.exit_code != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert "p.png" in result.stderr


def test_macros_lists_every_macro_with_comment(cli):
    result = cli("macros", "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert {
        "fwhm_arcsec",
        "nightly_stats",
        "detector_stats",
        "survey_stats",
        "target_stats",
        "image_quality",
        "finite_or_null",
    } <= set(rows)
    assert rows["fwhm_arcsec"]["signature"] == "fwhm_arcsec(psf_sigma, pixel_scale)"
    assert rows["nightly_stats"]["kind"] == "table"
    assert all(r["comment"] for r in rows.values())
    assert "abs" not in rows  # DuckDB's own functions are not listed


def test_stats_on_a_lake_without_images(cli, tmp_path):
    (tmp_path / "lake").mkdir()
    result = cli("stats", "--lake", tmp_path / "lake")
    assert result.exit_code == 1
    assert "no images yet" in result.stderr and len(result.stderr.strip().splitlines()) == 1
