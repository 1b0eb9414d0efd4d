"""Benchmark: one Parquet file per target/night against one per target/night/detector.

Converts the same survey-scale collections with both ``--partition-by`` layouts and reports
files written, convert time, and the time of a full scan (per-night median FWHM over every
row) and of a point query (one target, night and detector). Run by hand; the numbers go to
docs/design.md.

    python bench/layout.py --scale 0.05 --detectors 62
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from convert import survey  # noqa: E402  (bench/convert.py: cached survey generation)

FULL_SCAN = (
    "SELECT night, median(fwhm_arcsec(psfSigma)) FILTER (WHERE NOT isnan(psfSigma)) "
    "FROM images GROUP BY night"
)
POINT = "SELECT * FROM images WHERE target = 'A0a' AND night = '20190402' AND detector = 5"


def best_of(fn, n: int = 3) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--detectors", type=int, default=62)
    parser.add_argument("--workdir", type=Path, default=HERE / "out")
    args = parser.parse_args()
    from nightlake import Lake
    from nightlake.ingest.convert import ConvertOptions, convert

    per_night, _ = survey(args.workdir, args.scale, args.detectors)
    print(f"{'layout':<26}{'files':>7}{'rows':>9}{'convert s':>11}{'scan s':>9}{'point s':>9}")
    for levels in (("target", "night"), ("target", "night", "detector")):
        lake_dir = args.workdir / ("lake-" + "-".join(levels))
        shutil.rmtree(lake_dir, ignore_errors=True)
        lake = Lake(lake_dir)
        t0 = time.perf_counter()
        report = convert(lake, [per_night], ConvertOptions(partition_by=levels))
        write_s = time.perf_counter() - t0
        con = lake.connect()
        scan_s = best_of(lambda: con.sql(FULL_SCAN).fetchall())
        point_s = best_of(lambda: con.sql(POINT).fetchall())
        print(
            f"{','.join(levels):<26}{len(report.written):>7}{report.rows_written:>9}"
            f"{write_s:>11.2f}{scan_s:>9.3f}{point_s:>9.3f}"
        )
        shutil.rmtree(lake_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent / "src"))
    main()
