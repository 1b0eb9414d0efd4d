"""Benchmark: what a whole-lake query pays for: row groups, files, or their encoding (by hand).

The same rows (a survey lake's ``one.parquet``, written by bench/speed.py) in several forms:
one file with few or many row groups, many files of one row group, a few files of several;
with no dictionary pages, or with them for the short strings as the lake writes them
(``nightlake.lake.dictionary_columns``).
Each form answers the cross-night query of goal 1 in a fresh connection, the forms taking
turns; best and median CPU of ``--repeat``, and the ratio to the floor (``one.parquet``).

    python bench/rowgroups.py bench/out/lake-s1-target-night
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import CROSS_NIGHT  # noqa: E402  (goal 1's query, one home)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    import duckdb
    import pyarrow.parquet as pq

    from nightlake.lake import dictionary_columns

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lake", type=Path, help="a lake of bench/speed.py (with one.parquet)")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    table = pq.read_table(args.lake / "one.parquet").replace_schema_metadata(None)
    parts = args.lake.with_name(args.lake.name + "-rowgroups")
    n = table.num_rows
    forms = {"one.parquet (floor)": str(args.lake / "one.parquet")}
    short = dictionary_columns(table)
    for files, group, dictionary, label in (
        (1, 122_880, False, "one file, row groups of 122,880"),
        (1, 122_880, True, "the same, dictionaries (short strings)"),
        (1, -(-n // 42), False, "one file, 42 row groups"),
        (42, n, False, "42 files, one row group each"),
        (42, n, True, "the same, dictionaries (the lake's)"),
        (11, -(-n // 42), False, "11 files of 4 row groups"),
        (11, n, False, "11 files, one row group each"),
        (5, n, False, "5 files, one row group each"),
    ):
        out = parts / f"{files}-{group}-{'dict' if dictionary else 'plain'}"
        if not (out / "done").exists():  # written whole once (delete the directory to redo)
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            step = -(-n // files)
            for i in range(files):
                pq.write_table(
                    table.slice(i * step, step),
                    out / f"{i:04d}.parquet",
                    compression="zstd",
                    use_dictionary=short if dictionary else False,
                    row_group_size=group,
                )
            (out / "done").touch()
        forms[label] = str(out / "*.parquet")
    cpu: dict[str, list[float]] = {label: [] for label in forms}
    for _ in range(args.repeat):
        for label, src in forms.items():
            start = _cpu()
            con = duckdb.connect()
            con.sql(CROSS_NIGHT.format(src=f"read_parquet('{src}')")).fetchall()
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
