"""Benchmark: ECSV collections → Parquet, nightlake against astropy (run by hand).

Baseline (named in issue 2): astropy ``Table.read(format="ascii.ecsv")`` + ``Table.write(…
parquet)`` per file; for ``joined.collection`` the same read, then one Parquet file per
target/night group. Goal: nightlake ≥ 8× faster. Prints the ratio for the per-night directory
and for joined.collection (best of ``--repeat`` runs, baseline and nightlake taking turns, and
the ratio of medians), plus the time of the body parse alone.

    python bench/convert.py                  # scale 0.1: every Table II pair, 62 detectors
    python bench/convert.py --scale 0.25 --detectors 30
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _fixtures_module():
    spec = importlib.util.spec_from_file_location(
        "make_fixtures", REPO / "data" / "fixtures" / "make_fixtures.py"
    )
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
        fx.write_survey(
            per_night, scale=scale, detectors=range(1, detectors + 1), layout="per-night"
        )
        fx.write_survey(joined, scale=scale, detectors=range(1, detectors + 1), layout="joined")
        (base / "done").touch()
        print(f"generated survey in {time.perf_counter() - t0:.1f} s")
    return per_night, joined / "joined.collection"


def astropy_per_file(files: list[Path], out: Path) -> None:
    from astropy.table import Table

    out.mkdir(parents=True, exist_ok=True)
    for f in files:
        Table.read(f, format="ascii.ecsv").write(
            out / (f.stem + ".parquet"), format="parquet", overwrite=True
        )


def astropy_joined(joined: Path, out: Path) -> None:
    from astropy.table import Table

    out.mkdir(parents=True, exist_ok=True)
    table = Table.read(joined, format="ascii.ecsv")
    groups = table.group_by(["fieldname", "night"])
    for key, group in zip(groups.groups.keys, groups.groups):
        group.write(
            out / f"{key['night']}_{key['fieldname']}.parquet", format="parquet", overwrite=True
        )


def nightlake_convert(sources: list[Path], lake_dir: Path) -> None:
    import pyarrow as pa

    from nightlake import Lake
    from nightlake.ingest.convert import convert, prefer_jemalloc

    baseline_pool = pa.default_memory_pool()
    prefer_jemalloc()  # as `nightlake convert` does; astropy keeps pyarrow's default
    try:
        report = convert(Lake(lake_dir), sources)
    finally:
        pa.set_memory_pool(baseline_pool)
    assert report.ok, report.failed


def interleaved(runs: dict[str, callable], out: Path, repeat: int) -> dict[str, list[float]]:
    """Times of each run, the runs taking turns (the baseline and nightlake see the same
    moments of a noisy machine); every run starts without its previous output."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            target = out / name
            shutil.rmtree(target, ignore_errors=True)
            t0 = time.perf_counter()
            run(target)
            times[name].append(time.perf_counter() - t0)
    return times


def body_parse_only(files: list[Path]) -> tuple[float, int]:
    from nightlake.ingest.ecsv import read_ecsv

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
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (default 3)")
    args = parser.parse_args()
    per_night, joined = survey(args.workdir, args.scale, args.detectors)
    files = sorted(per_night.glob("*.collection"))
    mb = sum(f.stat().st_size for f in files) / 1e6
    print(
        f"{len(files)} per-night files, {mb:.0f} MB; "
        f"joined.collection {joined.stat().st_size / 1e6:.0f} MB"
    )
    out = args.workdir / "scratch"
    shutil.rmtree(out, ignore_errors=True)

    parse_s, _ = body_parse_only(files)
    print(f"nightlake read_ecsv alone (per-night files): {parse_s:.2f} s ({mb / parse_s:.0f} MB/s)")
    times = interleaved(
        {
            "astropy per-night": lambda o: astropy_per_file(files, o),
            "nightlake per-night": lambda o: nightlake_convert([per_night], o),
            "astropy joined": lambda o: astropy_joined(joined, o),
            "nightlake joined": lambda o: nightlake_convert([joined], o),
        },
        out,
        args.repeat,
    )
    print(f"best of {args.repeat} (median in brackets), runs taking turns")
    print(f"{'input':<22}{'astropy s':>16}{'nightlake s':>16}{'ratio':>15}   (goal ≥ 8×)")
    for name in ("per-night", "joined"):
        base, ours = times[f"astropy {name}"], times[f"nightlake {name}"]
        best = min(base) / min(ours)
        typical = statistics.median(base) / statistics.median(ours)
        print(
            f"{name:<22}{min(base):>8.2f} ({statistics.median(base):5.2f})"
            f"{min(ours):>8.2f} ({statistics.median(ours):5.2f}){best:>7.1f}× ({typical:4.1f}×)"
        )
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    main()
