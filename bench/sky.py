"""Benchmark: ``images_at`` over a whole survey-scale lake against a plain scan (by hand).

Baseline: ``SELECT count(*)`` over the eight corner columns of ``images`` (what any footprint
query must at least read). nightlake: ``SELECT count(*) FROM images_at(ra, dec)`` at a
position inside one of the survey's fields, and ``images_in_cone`` with a 0.5 degree radius.
Each run opens a fresh ``Lake`` (views, macros and Parquet footers are read again), as a
script or a ``nightlake images-at`` does. Goal: images_at ≤ 3× the scan.

    python bench/sky.py                  # scale 0.1, 62 detectors: ~54,000 images
    python bench/sky.py --scale 0.25
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from convert import survey  # noqa: E402  (bench/convert.py: cached survey generation)

CORNERS = "ra_tl, dec_tl, ra_tr, dec_tr, ra_br, dec_br, ra_bl, dec_bl"


def timed(lake_path: Path, query: str, params=None, runs: int = 7) -> tuple[float, int]:
    """Median seconds of ``runs`` fresh-connection runs, and the count the query returned."""
    from nightlake import Lake

    times, count = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        con = Lake(lake_path).connect()
        count = con.execute(query, params or {}).fetchone()[0]
        con.close()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--detectors", type=int, default=62)
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "nightlake-bench"
    )
    args = parser.parse_args()

    from nightlake import Lake
    from nightlake.ingest.convert import convert

    per_night, _ = survey(args.workdir, args.scale, args.detectors)
    lake_path = args.workdir / f"sky-lake-s{args.scale:g}-d{args.detectors}"
    if not lake_path.exists():
        convert(Lake(lake_path), [str(per_night)])
    con = Lake(lake_path).connect()
    rows = con.execute("SELECT count(*) FROM images").fetchone()[0]
    # a position inside some image: the centre of the middle row
    ra, dec = con.execute(f"SELECT ra, dec FROM images LIMIT 1 OFFSET {rows // 2}").fetchone()
    con.close()

    scan, _ = timed(lake_path, f"SELECT count(*) FROM (SELECT {CORNERS} FROM images)")
    at, hits = timed(lake_path, "SELECT count(*) FROM images_at($ra, $dec)", {"ra": ra, "dec": dec})
    cone, near = timed(
        lake_path, "SELECT count(*) FROM images_in_cone($ra, $dec, 0.5)", {"ra": ra, "dec": dec}
    )
    connect, _ = timed(lake_path, "SELECT 1")
    print(f"lake: {rows} images, position ({ra:.4f}, {dec:.4f})")
    print(f"connect only              {connect * 1e3:8.1f} ms")
    print(f"count(*) of the corners   {scan * 1e3:8.1f} ms")
    print(f"images_at                 {at * 1e3:8.1f} ms  ({hits} images)  ratio {at / scan:.2f}")
    print(
        f"images_in_cone 0.5 deg    {cone * 1e3:8.1f} ms  ({near} images)  ratio {cone / scan:.2f}"
    )


if __name__ == "__main__":
    main()
