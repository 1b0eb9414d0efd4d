"""Benchmark: ECSV collections → Parquet, nightlake against astropy (run by hand).

Baseline (named in issue 2): astropy ``Table.read(format="ascii.ecsv")`` + ``Table.write(…
parquet)`` per file; for ``joined.collection`` the same read, then one Parquet file per
target/night group. Goal: nightlake ≥ 8× faster. Prints the ratio for the per-night directory
and for joined.collection, plus the time of the body parse alone.

    python bench/convert.py                  # scale 0.1: every Table II pair, 62 detectors
    python bench/convert.py --scale 0.25 --detectors 30
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _fixtures_module():
    spec = importlib.util.spec_from_file_location("make_fixtures",
                                                  REPO / "data" / "fixtures" / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def survey(workdir: Path, scale: float, detectors: int) -> tuple[Path, Path]:
    """Per-night directory and joined.collection at this scale (cached between runs)."""
    base = workdir / f"survey-s{scale:g}-d{detectors}"
    per_night, joined = base / "per-night", base / "joined"
    if not (base / "done").exists():
        shutil.rmtree(base, ignore_errors=True)
        fx = _fixtures_module()
        t0 = time.perf_counter()
        fx.write_survey(per_night, scale=scale, detectors=range(1, detectors + 1), layout="per-night")
        fx.write_survey(joined, scale=scale, detectors=range(1, detectors + 1), layout="joined")
        (base / "done").touch()
        print(f"generated survey in {time.perf_counter() - t0:.1f} s")
    return per_night, joined / "joined.collection"


def astropy_per_file(files: list[Path], out: Path) -> float:
    from astropy.table import Table

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for f in files:
        Table.read(f, format="ascii.ecsv").write(out / (f.stem + ".parquet"), format="parquet",
                                                  overwrite=True)
    return time.perf_counter() - t0


def astropy_joined(joined: Path, out: Path) -> float:
    from astropy.table import Table

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    table = Table.read(joined, format="ascii.ecsv")
    groups = table.group_by(["fieldname", "night"])
    for key, group in zip(groups.groups.keys, groups.groups):
        group.write(out / f"{key['night']}_{key['fieldname']}.parquet", format="parquet",
                    overwrite=True)
    return time.perf_counter() - t0


def nightlake_convert(sources: list[Path], lake_dir: Path) -> float:
    import pyarrow as pa

    from nightlake import Lake
    from nightlake.convert import convert, prefer_jemalloc

    shutil.rmtree(lake_dir, ignore_errors=True)
    baseline_pool = pa.default_memory_pool()
    prefer_jemalloc()  # as `nightlake convert` does; astropy keeps pyarrow's default
    try:
        t0 = time.perf_counter()
        report = convert(Lake(lake_dir), sources)
        elapsed = time.perf_counter() - t0
    finally:
        pa.set_memory_pool(baseline_pool)
    assert report.ok, report.failed
    return elapsed


def body_parse_only(files: list[Path]) -> tuple[float, int]:
    from nightlake.ecsv import read_ecsv

    t0 = time.perf_counter()
    size = 0
    for f in files:
        size += read_ecsv(f).size
    return time.perf_counter() - t0, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--detectors", type=int, default=62)
    parser.add_argument("--workdir", type=Path, default=HERE / "out")
    args = parser.parse_args()
    per_night, joined = survey(args.workdir, args.scale, args.detectors)
    files = sorted(per_night.glob("*.collection"))
    mb = sum(f.stat().st_size for f in files) / 1e6
    print(f"{len(files)} per-night files, {mb:.0f} MB; joined.collection {joined.stat().st_size / 1e6:.0f} MB")
    out = args.workdir / "scratch"
    shutil.rmtree(out, ignore_errors=True)

    parse_s, _ = body_parse_only(files)
    print(f"nightlake read_ecsv alone (per-night files): {parse_s:.2f} s ({mb / parse_s:.0f} MB/s)")
    rows = []
    base = astropy_per_file(files, out / "astropy-per-night")
    ours = nightlake_convert([per_night], out / "lake-per-night")
    rows.append(("per-night directory", base, ours))
    base = astropy_joined(joined, out / "astropy-joined")
    ours = nightlake_convert([joined], out / "lake-joined")
    rows.append(("joined.collection", base, ours))
    print(f"{'input':<22}{'astropy s':>11}{'nightlake s':>13}{'ratio':>8}   (goal ≥ 8×)")
    for name, base, ours in rows:
        print(f"{name:<22}{base:>11.2f}{ours:>13.2f}{base / ours:>7.1f}×")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    main()
