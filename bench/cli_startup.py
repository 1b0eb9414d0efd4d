"""``nightlake sql`` as a process against a bare ``python -c 'import duckdb …'`` on one file.

The speed goal: ``nightlake sql --lake L "select count(*) from images"`` (table, csv, json)
within 1.5x of Python + DuckDB running the same count on one Parquet file of the same rows.
The lake is data/fixtures/previous/lake (copied); the file is its images written as one
Parquet file. Runs go in turns (one of each, repeated), so load on the machine hits all
alike; prints best and median of each and the ratios to the floor, in wall time and in the
process's CPU time (user + system), which a loaded machine disturbs far less.

nightlake's modules are byte-compiled first, as an install has them (pip compiles them; a
checkout run with PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module each run).

    .venv/bin/python bench/cli_startup.py --repeat 10
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    import duckdb

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src")], check=True)
    work = Path(tempfile.mkdtemp(prefix="nightlake-bench-"))
    lake = work / "lake"
    shutil.copytree(ROOT / "data" / "fixtures" / "previous" / "lake", lake)
    one = work / "one.parquet"
    glob = str(lake / "images" / "**" / "*.parquet")
    duckdb.sql(f"COPY (SELECT * FROM read_parquet('{glob}', hive_partitioning = true)) TO '{one}'")
    floor_q = f"select count(*) from read_parquet('{one}')"
    runs = {
        "python -c duckdb (floor)": [
            sys.executable,
            "-c",
            f"import duckdb; print(duckdb.sql({floor_q!r}).fetchall())",
        ],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    for fmt in ("table", "csv", "json"):
        runs[f"nightlake sql --format {fmt}"] = [
            str(BIN / "nightlake"),
            *("sql", "--lake", str(lake), "--format", fmt, "select count(*) from images"),
        ]
    runs["nightlake --help"] = [str(BIN / "nightlake"), "--help"]
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, argv in runs.items():
            used = _children_cpu()
            t0 = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(_children_cpu() - used)
    for label, table in (("wall", times), ("CPU", cpu)):
        floor = table["python -c duckdb (floor)"]
        print(f"{label:32} {'best':>8} {'median':>8} {'ratio best':>11} {'ratio median':>13}")
        for name, ts in table.items():
            best, med = min(ts), statistics.median(ts)
            print(
                f"{name:32} {best * 1e3:6.0f}ms {med * 1e3:6.0f}ms "
                f"{best / min(floor):10.2f}x {med / statistics.median(floor):12.2f}x"
            )
    shutil.rmtree(work)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
