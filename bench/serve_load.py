"""Benchmark ``nightlake serve`` under 200 concurrent requests (run by hand; no asserts).

    .venv/bin/python bench/serve_load.py [--requests 200] [--turns 5]

The lake is the web tests' (tests/web/lake_fixture.py: the fixture collections, seven
nights, with a detrend mirror). One ``nightlake serve`` process on a free 127.0.0.1 port;
each turn sends ``--requests`` GETs at once, cycling through every page and a CSV download
per night (tests/web/load.py), and waits for all answers. Prints, per turn, the p50, p95 and
max latency and the wall time of the turn, then the median and best over the turns. The floor
is one request alone (``GET /`` with nothing else in flight), timed in every turn.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from web.independent import lake_nights  # noqa: E402  (the web tests' helpers)
from web.lake_fixture import build_web_lake  # noqa: E402
from web.live_server import live_server  # noqa: E402
from web.load import hammer, percentile  # noqa: E402


def turn(url: str, nights: list[str], count: int) -> tuple[list[float], float]:
    start = time.perf_counter()
    answers = hammer(url, nights, count=count)
    wall = time.perf_counter() - start
    bad = [a for a in answers if a.status != 200]
    if bad:
        raise SystemExit(f"{len(bad)} of {count} failed, e.g. {bad[0]}")
    return [a.seconds for a in answers], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--turns", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lake = build_web_lake(Path(tmp))
        nights = lake_nights(lake)
        with live_server(lake, Path(tmp) / "serve.log") as url:
            hammer(url, nights, count=len(nights) * 2 + 3)  # warm: the first page opens the lake
            rows = []
            for i in range(args.turns):
                alone, _ = turn(url, nights, 1)
                seconds, wall = turn(url, nights, args.requests)
                p50, p95 = percentile(seconds, 0.50), percentile(seconds, 0.95)
                rows.append((p50, p95, max(seconds), wall, alone[0]))
                print(
                    f"turn {i + 1}: p50 {p50 * 1e3:7.1f} ms  p95 {p95 * 1e3:7.1f} ms  "
                    f"max {max(seconds) * 1e3:7.1f} ms  all {args.requests} in {wall:5.2f} s  "
                    f"({args.requests / wall:5.1f} req/s; one alone {alone[0] * 1e3:5.1f} ms)"
                )
    med = [statistics.median(col) for col in zip(*rows, strict=True)]
    best = [min(col) for col in zip(*rows, strict=True)]
    for label, (p50, p95, top, wall, alone) in (("median", med), ("best", best)):
        print(
            f"{label:>6}: p50 {p50 * 1e3:7.1f} ms  p95 {p95 * 1e3:7.1f} ms  max {top * 1e3:7.1f} ms"
            f"  {args.requests} in {wall:5.2f} s  one alone {alone * 1e3:5.1f} ms"
        )


if __name__ == "__main__":
    main()
