"""Benchmark: what a whole-lake query pays for, row groups or files (run by hand).

The same rows (a survey lake's ``one.parquet``, written by bench/speed.py) in several forms:
one file with few or many row groups, many files of one row group, a few files of several.
Each form answers the cross-night query of goal 1 in a fresh connection, the forms taking
turns; best and median CPU of ``--repeat``, and the ratio to the floor (``one.parquet``).

    python bench/rowgroups.py bench/out/lake-s1-target-night
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import time
from pathlib import Path

QUERY = (
    "SELECT night, median(2.355 * 0.2637 * psfSigma) FROM read_parquet('{src}') "
    "WHERE isfinite(psfSigma) GROUP BY night ORDER BY night"
)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    import duckdb
    import pyarrow.parquet as pq

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lake", type=Path, help="a lake of bench/speed.py (with one.parquet)")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    table = pq.read_table(args.lake / "one.parquet").replace_schema_metadata(None)
    parts = args.lake.with_name(args.lake.name + "-rowgroups")
    n = table.num_rows
    forms = {"one.parquet (floor)": str(args.lake / "one.parquet")}
    for files, group, label in (
        (1, 122_880, "one file, row groups of 122,880"),
        (1, -(-n // 42), "one file, 42 row groups"),
        (42, n, "42 files, one row group each"),
        (11, -(-n // 42), "11 files of 4 row groups"),
        (11, n, "11 files, one row group each"),
        (5, n, "5 files, one row group each"),
    ):
        out = parts / f"{files}-{group}"
        if not out.is_dir():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            step = -(-n // files)
            for i in range(files):
                pq.write_table(
                    table.slice(i * step, step),
                    out / f"{i:04d}.parquet",
                    compression="zstd",
                    use_dictionary=False,
                    row_group_size=group,
                )
        forms[label] = str(out / "*.parquet")
    cpu: dict[str, list[float]] = {label: [] for label in forms}
    for _ in range(args.repeat):
        for label, src in forms.items():
            start = _cpu()
            con = duckdb.connect()
            con.sql(QUERY.format(src=src)).fetchall()
            con.close()
            cpu[label].append(_cpu() - start)
    floor = min(cpu["one.parquet (floor)"])
    print(f"# bench/rowgroups.py {time.strftime('%Y-%m-%d %H:%M')}: {n} rows, CPU best (median)")
    for label, runs in cpu.items():
        print(
            f"   {label:<36}{min(runs) * 1e3:8.1f} ms ({statistics.median(runs) * 1e3:7.1f})"
            f"   {min(runs) / floor:5.2f}x"
        )


if __name__ == "__main__":
    main()
