"""Benchmark ``nightlake audit`` against one ``resolve_detrends`` (run by hand).

    .venv/bin/python bench/audit.py [--images 1000000] [--records 10000] [--turns 3]

The lake and DetReg database are bench/resolve.py's (N images x 10,000 flat records, mirrored
into the lake). Both sides run as fresh processes, in turns (audit, resolve, audit, …), so
neither profits from a warm cache the other lacks:

- audit:   ``nightlake audit --lake L --type flat --mode recent -o findings.parquet``
- resolve: ``nightlake sql --lake L -o resolved.parquet
           "FROM resolve_detrends('flat', mode := 'recent')"``

Goal: audit <= 3x one resolve. Prints the medians and the ratio.
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

sys.path.insert(0, str(Path(__file__).parent))
from resolve import build  # noqa: E402  (the bench lake lives beside this script)

BIN = Path(sys.executable).parent


def run(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):  # audit exits 1 when it finds a gap
        raise SystemExit(f"{argv[:2]} failed: {done.stderr}")
    return elapsed


def _secs(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory(prefix="nl-bench-audit-") as tmpdir:
        tmp = Path(tmpdir)
        start = time.perf_counter()
        lake, _db = build(tmp, args.images, args.records, rng)
        print(
            f"built {args.images:,} images x {args.records:,} flats in "
            f"{time.perf_counter() - start:.1f} s"
        )
        nl = str(BIN / "nightlake")
        audit = [
            nl,
            "audit",
            "--lake",
            str(lake.path),
            "--type",
            "flat",
            "--mode",
            "recent",
            "-o",
            str(tmp / "findings.parquet"),
        ]
        resolve = [
            nl,
            "sql",
            "--lake",
            str(lake.path),
            "-o",
            str(tmp / "resolved.parquet"),
            "FROM resolve_detrends('flat', mode := 'recent')",
        ]
        times: dict[str, list[float]] = {"audit": [], "resolve": []}
        for _ in range(args.turns):
            times["audit"].append(run(audit))
            times["resolve"].append(run(resolve))
        a, r = statistics.median(times["audit"]), statistics.median(times["resolve"])
        import pyarrow.parquet as pq

        findings = pq.read_table(tmp / "findings.parquet").column("finding").to_pylist()
        kinds = {k: findings.count(k) for k in sorted(set(findings))}
        print(f"audit   median {a:6.2f} s  {_secs(times['audit'])}  {kinds}")
        print(f"resolve median {r:6.2f} s  {_secs(times['resolve'])}")
        print(f"ratio audit / resolve = {a / r:.2f}x (goal <= 3x)")


if __name__ == "__main__":
    main()
