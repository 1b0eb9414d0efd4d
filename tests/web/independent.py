"""What the web tests expect, found without the app: polars over the lake's Parquet files
and ``nightlake`` commands run as processes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .live_server import BIN

#: chart-name suffix → the images column its points need a finite value of
METRICS = {"fwhm": "psfSigma", "zero-point": "zeroPoint", "sky": "skyBg"}


def images_frame(lake: Path):
    """Every image row of the lake (``night`` as text), read by polars from the Parquet files."""
    import polars as pl

    frame = pl.read_parquet(lake / "images" / "**" / "*.parquet", hive_partitioning=True)
    return frame.with_columns(pl.col("night").cast(pl.Utf8))


def lake_nights(lake: Path) -> list[str]:
    return sorted(images_frame(lake)["night"].unique())


def count_with_value(frame, by: str, column: str) -> int:
    """How many ``by`` groups have at least one finite ``column``."""
    import polars as pl

    return frame.filter(pl.col(column).is_finite())[by].n_unique()


def expected_marks(lake: Path, night: str | None) -> dict[str, int]:
    """Chart name → its number of points: per night on /, per visit and detector on a night."""
    import polars as pl

    frame = images_frame(lake)
    if night is None:
        return {f"nights-{m}": count_with_value(frame, "night", c) for m, c in METRICS.items()}
    frame = frame.filter(pl.col("night") == night)
    marks = {f"night-{m}": count_with_value(frame, "visit", c) for m, c in METRICS.items()}
    marks["focal-plane"] = count_with_value(frame, "detector", "psfSigma")
    return marks


def nightlake(*args, ok: tuple[int, ...] = (0,)) -> bytes:
    """``nightlake ARGS…`` as a process; its stdout (its exit status must be in ``ok``)."""
    done = subprocess.run(
        [str(BIN / "nightlake"), *map(str, args)], capture_output=True, timeout=120
    )
    if done.returncode not in ok:
        raise AssertionError(f"nightlake {args} exited {done.returncode}: {done.stderr.decode()}")
    return done.stdout


def nightlake_sql(lake: Path, query: str, fmt: str, out: Path | None = None, **params) -> bytes:
    """``nightlake sql`` as a process: its stdout, or ``out``'s bytes with ``-o``."""
    args = ["sql", "--lake", lake, "--format", fmt, query]
    for name, value in params.items():
        args += ["-p", f"{name}={value}"]
    if out is None:
        return nightlake(*args)
    nightlake(*args, "-o", out)
    return out.read_bytes()
