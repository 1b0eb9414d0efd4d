"""Benchmark ``nightlake serve`` under 200 concurrent requests (run by hand; no asserts).

    .venv/bin/python bench/serve_load.py [--requests 200] [--turns 3]

The lake is the web tests' (tests/web/lake_fixture.py: the fixture collections, seven
nights, with a detrend mirror). One ``nightlake serve`` process on a free 127.0.0.1 port.
Each turn sends the same ``--requests`` GETs (every page, a query, and a CSV download per
night, in turn: tests/web/load.py) twice: one after another (the floor: no request waits
for another) and all at once, waiting for every answer. Prints per turn the latency
percentiles of the concurrent run, both wall times and their ratio (on two cores, 0.5 would
be perfect use of both), then the median and best over the turns.
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
from web.load import hammer, percentile, request_paths  # noqa: E402


def concurrent(url: str, nights: list[str], count: int) -> tuple[list[float], float]:
    """``count`` requests at once: each one's latency, and the wall time until the last."""
    start = time.perf_counter()
    answers = hammer(url, nights, count=count)
    wall = time.perf_counter() - start
    bad = [a for a in answers if a.status != 200]
    if bad:
        raise SystemExit(f"{len(bad)} of {count} failed, e.g. {bad[0]}")
    return [a.seconds for a in answers], wall


def one_by_one(url: str, nights: list[str], count: int) -> float:
    """The floor: the same ``count`` requests one after another (no queueing); the wall time."""
    import httpx2

    mix = request_paths(nights)
    start = time.perf_counter()
    with httpx2.Client(base_url=url, timeout=120, trust_env=False) as client:
        for i in range(count):
            client.get(mix[i % len(mix)]).raise_for_status()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args()
    n = args.requests
    with tempfile.TemporaryDirectory() as tmp:
        lake = build_web_lake(Path(tmp))
        nights = lake_nights(lake)
        with live_server(lake, Path(tmp) / "serve.log") as url:
            one_by_one(url, nights, len(request_paths(nights)))  # warm: opens the lake once
            rows = []
            for i in range(args.turns):
                serial = one_by_one(url, nights, n)
                seconds, wall = concurrent(url, nights, n)
                p50, p95 = percentile(seconds, 0.50), percentile(seconds, 0.95)
                rows.append((p50, p95, max(seconds), wall, serial))
                print(
                    f"turn {i + 1}: concurrent p50 {p50:6.2f} s  p95 {p95:6.2f} s  "
                    f"max {max(seconds):6.2f} s  all in {wall:6.2f} s ({n / wall:5.1f} req/s);  "
                    f"one by one {serial:6.2f} s ({serial / n * 1e3:5.1f} ms each)  "
                    f"ratio {wall / serial:4.2f}"
                )
    for label, pick in (("median", statistics.median), ("best", min)):
        p50, p95, top, wall, serial = (pick(col) for col in zip(*rows, strict=True))
        print(
            f"{label:>6}: concurrent p50 {p50:6.2f} s  p95 {p95:6.2f} s  max {top:6.2f} s  "
            f"all in {wall:6.2f} s;  one by one {serial:6.2f} s ({serial / n * 1e3:5.1f} ms each)"
        )


if __name__ == "__main__":
    main()
