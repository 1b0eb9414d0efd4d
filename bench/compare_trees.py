"""The query path of this tree against another commit's, as a user runs it (by hand).

Whole processes in turns — the floor (``python -c`` with DuckDB on one Parquet file of the
same rows), this tree, and the other tree — and then ``nightlake serve`` from each tree side
by side, answering the same ``/sql`` request in turns (the server's warm path). Prints best
(median) and the ratio to the floor; no asserts.

    git archive <commit> src sql | tar -x -C /tmp/old
    .venv/bin/python -m compileall -q /tmp/old/src src     # else the old tree compiles each run
    .venv/bin/python bench/compare_trees.py --other-src /tmp/old/src \
        --lake bench/out/lake-s0.1-target-night           # a lake bench/speed.py built
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
FWHM = "2.355 * 0.2637 * psfSigma"
CROSS = (
    f"SELECT night, median({FWHM}) AS fwhm FROM {{src}} WHERE isfinite(psfSigma) "
    "GROUP BY night ORDER BY night"
)


def processes(lake: Path, other: dict[str, str], turns: int) -> None:
    py, nl, here = str(BIN / "python"), str(BIN / "nightlake"), dict(os.environ)
    one = f"read_parquet('{lake}/one.parquet')"
    count = f'import duckdb; print(duckdb.sql("select count(*) from {one}").fetchall())'
    cross_floor = f"import duckdb; duckdb.connect().sql({CROSS.format(src=one)!r}).fetchall()"
    lake_sql = (
        f"from nightlake import Lake; Lake({str(lake)!r}).sql({CROSS.format(src='images')!r})"
    )
    sql = [nl, "sql", "--lake", str(lake), "--format", "csv"]
    groups = {
        "count(*)": {
            "floor: python -c duckdb": ([py, "-c", count], here),
            "nightlake sql, this tree": ([*sql, "select count(*) from images"], here),
            "nightlake sql, other tree": ([*sql, "select count(*) from images"], other),
            "detrends, this tree": ([*sql, "select count(*) from detrends"], here),
            "detrends, other tree": ([*sql, "select count(*) from detrends"], other),
        },
        "cross-night": {
            "floor: python -c duckdb": ([py, "-c", cross_floor], here),
            "Lake(path).sql, this tree": ([py, "-c", lake_sql], here),
            "Lake(path).sql, other tree": ([py, "-c", lake_sql], other),
        },
    }
    for title, runs in groups.items():
        wall: dict[str, list[float]] = {k: [] for k in runs}
        cpu: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(turns):
            for name, (argv, env) in runs.items():
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                subprocess.run(argv, env=env, capture_output=True, check=True)
                wall[name].append(time.perf_counter() - t0)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[name].append(
                    after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
                )
        floor = next(iter(runs))
        print(f"-- {title}: whole processes, {turns} turns, best (median), ratio to the floor")
        for name in runs:
            walls, cpus = _row(wall[name], wall[floor]), _row(cpu[name], cpu[floor])
            print(f"   {name:<28} wall {walls}   cpu {cpus}")


def _row(xs: list[float], floor: list[float]) -> str:
    best, median = min(xs), statistics.median(xs)
    return (
        f"{best * 1e3:7.1f} ms ({median * 1e3:7.1f})  "
        f"{best / min(floor):4.2f}x ({median / statistics.median(floor):4.2f}x)"
    )


def served(lake: Path, other: dict[str, str], requests: int) -> None:
    from socket import create_server

    servers = {}
    for name, env in (("this tree", dict(os.environ)), ("other tree", other)):
        with create_server(("127.0.0.1", 0)) as probe:  # a free port
            port = probe.getsockname()[1]
        argv = [str(BIN / "nightlake"), "serve", "--lake", str(lake), "--port", str(port)]
        proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
        proc.stderr.readline()  # "serving … at URL": listening
        servers[name] = (proc, port)
    query = urllib.parse.quote("select count(*) from images")
    times: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for i in range(requests + 5):
            for name, (_, port) in servers.items():
                t0 = time.perf_counter()
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/sql?q={query}") as page:
                    page.read()
                if i >= 5:  # the first requests build each server's connection
                    times[name].append(time.perf_counter() - t0)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait()
    print(f"-- nightlake serve, /sql count(*), {requests} requests each in turns")
    for name, xs in times.items():
        best, median = min(xs) * 1e3, statistics.median(xs) * 1e3
        print(f"   {name:<12} best {best:.2f} ms, median {median:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other-src", type=Path, required=True)
    parser.add_argument("--lake", type=Path, required=True)
    parser.add_argument("--turns", type=int, default=11)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    other = {**os.environ, "PYTHONPATH": str(args.other_src.resolve())}
    lake = args.lake.resolve()
    processes(lake, other, args.turns)
    served(lake, other, args.requests)


if __name__ == "__main__":
    main()
