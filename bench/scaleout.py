"""Benchmark resolve on a Dask cluster (run by hand: .venv/bin/python bench/scaleout.py).

For N synthetic images (default 1,000,000; --images 10000000 for the 10M goal) x R flat
records (default 100,000), in 8 nightly files, written by bench/resolve.py's builder:

- the local resolve (``nightlake resolve``: one DuckDB query, one file);
- the chunked resolve in this process (the timeline once, one chunk per file);
- the Dask path with 1 and 2 local workers (processes, one thread each), cluster start excluded;
- the timeline's rows, Arrow size and build time; the per-chunk throughput.

Goal on a 2-core machine: Dask with 2 workers <= 1.5x the local path at 1M, <= 1.3x at 10M.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from resolve import build  # noqa: E402

from nightlake.detrends.chunks import timeline, write_assignments_chunked  # noqa: E402
from nightlake.detrends.rules import write_assignments  # noqa: E402
from nightlake.scaleout import DaskExecutor, Executor  # noqa: E402


def clock(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    n = args.images
    with tempfile.TemporaryDirectory(prefix="nl-scaleout-") as tmp:
        tmp = Path(tmp)
        lake, _ = build(tmp, n, args.records, np.random.default_rng(7))
        chunks = [[f] for f in lake.image_files()]

        built = clock(lambda: timeline(lake, "flat", "exact"))
        tl = timeline(lake, "flat", "exact")
        print(
            f"timeline at {args.records:,} records: {tl.num_rows:,} rows, "
            f"{tl.nbytes / 1e6:.1f} MB, built in {built:.2f} s"
        )
        local = clock(lambda: write_assignments(lake, "flat", "exact", tmp / "local.parquet"))
        print(f"local            : {local:6.2f} s  {n / local:12,.0f} rows/s")
        chunked = clock(
            lambda: write_assignments_chunked(
                lake, "flat", "exact", tmp / "chunked", Executor(), chunks=chunks
            )
        )
        print(
            f"chunked, 1 proc : {chunked:6.2f} s  {n / chunked:12,.0f} rows/s  "
            f"({len(chunks)} chunks, {n / len(chunks) / (chunked / len(chunks)):,.0f} rows/s "
            "per chunk incl. timeline)"
        )
        for workers in (1, 2):
            with DaskExecutor(workers=workers) as runner:
                took = clock(
                    lambda runner=runner: write_assignments_chunked(
                        lake, "flat", "exact", tmp / f"dask{workers}", runner, chunks=chunks
                    )
                )
            print(
                f"dask, {workers} worker{'s' if workers > 1 else ' '}: {took:6.2f} s  "
                f"{n / took:12,.0f} rows/s  ({took / local:.2f}x local)"
            )


if __name__ == "__main__":
    main()
