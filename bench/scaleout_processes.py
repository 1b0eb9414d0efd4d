"""`nightlake resolve` as a user runs it: whole processes, local against `--executor dask
--workers 2` (the cluster's start-up included), in turns, on bench/resolve.py's lake.

    .venv/bin/python bench/scaleout_processes.py --records 100000 --turns 2
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from resolve import build

from nightlake.detrends.sync import sync

BIN = Path(sys.executable).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--turns", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nl-bench-scaleout-") as tmpdir:
        tmp = Path(tmpdir)
        lake, db = build(tmp, args.images, args.records, np.random.default_rng(5))
        sync(lake, db)
        base = [str(BIN / "nightlake"), "resolve", "--type", "flat", "--lake", str(lake.path)]
        runs = {"local": base, "dask, 2 workers": [*base, "--executor", "dask", "--workers", "2"]}
        times: dict[str, list[float]] = {name: [] for name in runs}
        for turn in range(args.turns):
            for name, argv in runs.items():
                start = time.perf_counter()
                out = tmp / f"out{turn}-{len(times[name])}-{name[:5]}.parquet"
                subprocess.run([*argv, "-o", str(out)], check=True, capture_output=True)
                times[name].append(time.perf_counter() - start)
        local = times["local"]
        for name, spent in times.items():
            print(
                f"{name:16s} median {statistics.median(spent):6.1f} s  best {min(spent):6.1f} s  "
                f"ratio {statistics.median(spent) / statistics.median(local):.2f}x "
                f"(best {min(spent) / min(local):.2f}x)"
            )


if __name__ == "__main__":
    main()
