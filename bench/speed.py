"""Benchmark: the speed goals as a user runs things (whole processes, fresh connections).

Every row is a ratio against a named floor — the same work done the plainest way on one
Parquet file — measured in turns (floor, nightlake, floor, …), best and median of ``--repeat``.
No asserts: it prints, and ``--out`` (default bench/out/speed-<date>.txt) keeps a copy.

    python bench/speed.py                         # every goal, scale 0.1 and 1.0
    python bench/speed.py --goals 1,5 --scales 1.0
    python bench/speed.py --goals 1 --years 10    # + the synthetic 10-year lake

Goals (see docs/design.md, "Speed at survey scale"):
1. cross-night query, fresh connection: lake layouts (today's glob, a file list, compacted
   per target / per year) against one Parquet file of the same rows;
2. a fresh ``Lake(path).sql(q)`` against a fresh ``duckdb.connect()`` on one file;
3. ``nightlake sql`` as a process (table, csv, json) against ``python -c 'import duckdb …'``;
4. ``nightlake convert joined.collection`` as a process against pyarrow.csv → one zstd file;
5. ``count(*)`` over ``resolve_detrends('flat')`` against a 3-column select of it;
6. converting one more night into a full lake against converting it into an empty lake.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
FIXTURES = REPO / "data" / "fixtures"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "src"))

from convert import survey  # noqa: E402  (bench/convert.py: cached survey generation)

FWHM = "2.355 * 0.2637 * psfSigma"  # fwhm_arcsec() inlined, so the floor needs no macros
CROSS_NIGHT = (
    f"SELECT night, median({FWHM}) AS fwhm FROM {{src}} "
    "WHERE isfinite(psfSigma) GROUP BY night ORDER BY night"
)
ONE_NIGHT = f"SELECT count(*), median({FWHM}) FROM {{src}} WHERE night = '{{night}}'"
LINES: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def turns(runs: dict, repeat: int, setup=None) -> dict[str, list[float]]:
    """Seconds of each run, the runs taking turns so all see the same moments of the machine.

    The CPU seconds of the same runs (this process's threads and its finished children:
    user + system) go to ``CPU[name]``; a loaded machine disturbs them far less than wall time.
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    for name in runs:
        CPU[name] = []
    for _ in range(repeat):
        for name, run in runs.items():
            if setup:
                setup(name)
            cpu0 = _cpu()
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
            CPU[name].append(_cpu() - cpu0)
    return times


CPU: dict[str, list[float]] = {}


def _cpu() -> float:
    import resource

    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def report(title: str, times: dict[str, list[float]], floor: str, goal: float) -> None:
    for label, table in (("wall", times), ("CPU", {k: CPU.get(k, []) for k in times})):
        if not all(table.values()):
            continue
        say(f"-- {title}, {label} time  (floor: {floor}; goal <= {goal:g}x)")
        base_best, base_med = min(table[floor]), statistics.median(table[floor])
        for name, ts in table.items():
            best, med = min(ts), statistics.median(ts)
            say(
                f"   {name:<46}{best * 1e3:9.1f} ms ({med * 1e3:8.1f}){best / base_best:7.2f}x"
                f" ({med / base_med:5.2f}x)"
            )


def run_process(argv: list[str], cwd: Path | None = None, env: dict | None = None) -> None:
    proc = subprocess.run(argv, capture_output=True, cwd=cwd, env=env)
    if proc.returncode:
        raise SystemExit(f"{argv}: exit {proc.returncode}\n{proc.stderr.decode()[-2000:]}")


# -- lakes -----------------------------------------------------------------------------------
def survey_lake(workdir: Path, scale: float, levels=("target", "night")) -> Path:
    """The survey converted by nightlake (cached), plus one.parquet: the same rows, one file."""
    from nightlake import Lake
    from nightlake.ingest.convert import ConvertOptions, convert

    per_night, _ = survey(workdir, scale, 62)
    lake_dir = workdir / f"lake-s{scale:g}-{'-'.join(levels)}"
    if not (lake_dir / "done").exists():
        shutil.rmtree(lake_dir, ignore_errors=True)
        convert(Lake(lake_dir), [per_night], ConvertOptions(partition_by=tuple(levels)))
        write_variants(lake_dir)
        (lake_dir / "done").touch()
    return lake_dir


def write_variants(lake_dir: Path) -> None:
    """Prototype layouts of the same rows beside the lake (for goal 1's options):

    one.parquet                          every row, one file (the floor)
    by-target/target=T/part.parquet      one file per target, a row group per night (night a
                                         column, sorted), so row-group statistics prune nights
    by-year/year=Y/part.parquet          one file per year, a row group per target and night

    A lake that ``convert`` compacted (AUTO_COMPACT_FILES) gets one.parquet only.
    """
    import duckdb
    import pyarrow.parquet as pq

    from nightlake import Lake

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(Lake(lake_dir).view_sql())
    con.execute(
        f"COPY (SELECT * FROM images ORDER BY target, night) TO "
        f"'{lake_dir / 'one.parquet'}' (FORMAT parquet, COMPRESSION zstd)"
    )
    if Lake(lake_dir).read_manifest().get("layout") == "compacted":
        return
    table = con.execute(
        "SELECT *, left(night, 4) AS year FROM images ORDER BY target, night"
    ).to_arrow_table()
    con.close()
    keys = list(zip(table.column("target").to_pylist(), table.column("night").to_pylist()))
    for name, key in (("by-target", "target"), ("by-year", "year")):
        out = lake_dir / name
        shutil.rmtree(out, ignore_errors=True)
        column = table.column(key).to_pylist()
        files: dict[str, list[tuple[int, int]]] = {}
        start = 0
        for i in range(1, len(keys) + 1):  # runs of one target/night: one row group each
            if i == len(keys) or keys[i] != keys[start]:
                files.setdefault(column[start], []).append((start, i))
                start = i
        for value, runs in files.items():
            path = out / f"{key}={value}" / "part.parquet"
            path.parent.mkdir(parents=True)
            # the Hive key is in the path, not the file
            rows = table.drop_columns(["year", "target"] if key == "target" else ["year"])
            with pq.ParquetWriter(path, rows.schema, compression="zstd") as writer:
                for a, b in runs:
                    writer.write_table(rows.slice(a, b - a), row_group_size=b - a)


def compacted_lake(lake_dir: Path) -> Path:
    """A copy of the lake compacted by ``nightlake.ingest.compact.compact`` itself (cached
    beside it, ``one.parquet`` linked): the layout a user gets from ``nightlake compact``."""
    from nightlake import Lake
    from nightlake.ingest.compact import compact

    out = lake_dir.with_name(lake_dir.name + "-compacted")
    if (out / "done").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    shutil.copytree(lake_dir / "images", out / "images")
    shutil.copy(lake_dir / "nightlake.json", out / "nightlake.json")
    os.symlink(lake_dir / "one.parquet", out / "one.parquet")
    t0 = time.perf_counter()
    written = compact(Lake(out))
    say(
        f"compacted {lake_dir.name}: {len(written)} files in {time.perf_counter() - t0:.1f} s "
        "(nightlake.ingest.compact.compact)"
    )
    (out / "done").touch()
    return out


def synthetic_lake(workdir: Path, years: int, fields: int = 3) -> Path:
    """A ``years``-long survey: every night, ``fields`` targets, one small file each
    (62 detectors x 2 exposures), written with pyarrow in the lake layout; cached."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    lake_dir = workdir / f"lake-synthetic-{years}y-{fields}f"
    if (lake_dir / "done").exists():
        return lake_dir
    shutil.rmtree(lake_dir, ignore_errors=True)
    t0 = time.perf_counter()
    rng = np.random.default_rng(7)
    start = dt.date(2019, 1, 1)
    n = 62 * 2
    det = np.tile(np.arange(1, 63), 2)
    for day in range(365 * years):
        date = start + dt.timedelta(days=day)
        night = date.strftime("%Y%m%d")
        mjd0 = 58484.0 + day
        for f in range(fields):
            target = f"F{f:02d}"
            table = pa.table(
                {
                    "visit": np.repeat(np.arange(2) + day * 10 + f * 3, 62).astype("int64"),
                    "detector": det.astype("int64"),
                    "mjd": mjd0 + np.repeat(np.arange(2), 62) * 0.01 + 0.1 * f,
                    "exposureTime": np.full(n, 300.0),
                    "filter": np.full(n, "r DECam SDSS c0002 6415.0 1480.0"),
                    "band": np.full(n, "r"),
                    "psfSigma": rng.normal(4.0, 0.5, n),
                    "zeroPoint": rng.normal(30.0, 0.1, n),
                    "skyBg": rng.normal(900.0, 30.0, n),
                    "ra": rng.normal(150.0, 1.0, n),
                    "dec": rng.normal(2.0, 1.0, n),
                }
            )
            out = lake_dir / "images" / f"target={target}" / f"night={night}"
            out.mkdir(parents=True)
            pq.write_table(table, out / f"{night}_{target}.parquet", compression="zstd")
    (lake_dir / "nightlake.json").write_text(
        '{"partition_by": ["target", "night"], "uniform_schema": true}\n'
    )
    write_variants(lake_dir)
    (lake_dir / "done").touch()
    say(
        f"generated {lake_dir.name}: {365 * years * fields} partitions "
        f"in {time.perf_counter() - t0:.0f} s"
    )
    return lake_dir


def tenfold_lake(lake_dir: Path) -> Path:
    """A copy of a compacted lake with each row ten times (visit renumbered), cut into parts
    as ``compact`` cuts that many rows (``nightlake.ingest.compact._cut``), and one.parquet
    likewise: scale 1.0's row count without generating scale 1.0 (about 50 minutes on a
    loaded VM)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from nightlake import Lake
    from nightlake.ingest import compact as compact_module
    from nightlake.lake import partition_metadata

    out = lake_dir.with_name(lake_dir.name + "-x10")
    if (out / "done").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)

    def tenfold(table):
        visit = table.schema.get_field_index("visit")
        shifted = [pc.add(table.column(visit), k * 10_000_000) for k in range(10)]
        return pa.concat_tables(table.set_column(visit, "visit", v) for v in shifted)

    years: dict[str, list] = {}
    for f in sorted((lake_dir / "images").rglob("*.parquet")):
        table = pq.read_table(f, partitioning=None)
        records = compact_module.unpacked_records(partition_metadata(table.schema))
        years.setdefault(f.parent.name, []).append(
            (tenfold(table.replace_schema_metadata(None)), records)
        )
    lake = Lake(out)
    for year, parts in years.items():
        table, records = compact_module._sorted_rows(parts)
        for first, rows, recs in compact_module._cut(table, records):
            path = lake.images_dir / year / f"{year[5:]}_{first}.parquet"
            compact_module._write_compacted(lake, path, rows, recs)
    shutil.copy(lake_dir / "nightlake.json", out / "nightlake.json")
    pq.write_table(tenfold(pq.read_table(lake_dir / "one.parquet")), out / "one.parquet")
    (out / "done").touch()
    return out


def lake_source(lake_dir: Path, option: str) -> str:
    """The FROM clause of ``images`` in each layout option."""
    import json

    images = lake_dir / "images"
    levels = json.loads((lake_dir / "nightlake.json").read_text())["partition_by"]
    types = ", ".join(f"'{k}': VARCHAR" for k in levels)
    hive = f"hive_partitioning = true, hive_types = {{{types}}}"
    if option == "glob":  # today's view (union_by_name unless the manifest says uniform)
        return f"SELECT * FROM read_parquet('{images}/**/*.parquet', {hive})"
    if option == "glob, union_by_name":
        return f"SELECT * FROM read_parquet('{images}/**/*.parquet', {hive}, union_by_name = true)"
    if option == "file list":
        files = sorted(images.rglob("*.parquet"))
        listed = ", ".join(f"'{f}'" for f in files)
        return f"SELECT * FROM read_parquet([{listed}], {hive})"
    if option == "one file per target":
        return (
            f"SELECT * FROM read_parquet('{lake_dir}/by-target/*/*.parquet', "
            "hive_partitioning = true, hive_types = {'target': VARCHAR})"
        )
    if option == "one file per year":
        return (
            f"SELECT * EXCLUDE (year) FROM read_parquet('{lake_dir}/by-year/*/*.parquet', "
            "hive_partitioning = true, hive_types = {'year': VARCHAR})"
        )
    if option.startswith("nightlake view"):  # Lake.view_sql()'s images view, as built
        from nightlake import Lake

        target = compacted_lake(lake_dir) if "compacted" in option else lake_dir
        views = Lake(target).view_sql()
        return views.split(" AS ", 1)[1].split(";\n", 1)[0].rstrip(";")
    if option == "one file (floor)":
        return f"SELECT * FROM read_parquet('{lake_dir}/one.parquet')"
    raise ValueError(option)


# -- goals -----------------------------------------------------------------------------------
def goal1(lake_dir: Path, label: str, repeat: int) -> None:
    import json

    import duckdb

    options = [
        "one file (floor)",
        "glob",
        "one file per target",
        "one file per year",
        "nightlake view",
        "nightlake view, compacted",
    ]
    compacted = json.loads((lake_dir / "nightlake.json").read_text()).get("layout") == "compacted"
    if compacted:  # convert compacted it: the glob and the prototypes are not there
        options = ["one file (floor)", "nightlake view"]
    files = sum(1 for _ in (lake_dir / "images").rglob("*.parquet"))
    night = (
        duckdb.connect()
        .execute(f"SELECT min(night) FROM ({lake_source(lake_dir, 'nightlake view')})")
        .fetchone()[0]
    )

    def fresh(query: str, option: str):
        def run():
            con = duckdb.connect()
            con.sql(query.format(src=f"({lake_source(lake_dir, option)})", night=night)).fetchall()
            con.close()

        return run

    for title, query in (("cross-night median FWHM", CROSS_NIGHT), ("one night", ONE_NIGHT)):
        times = turns({o: fresh(query, o) for o in options}, repeat)
        report(
            f"goal 1, {label} ({files} files): {title}, fresh connection",
            times,
            "one file (floor)",
            2,
        )
    con = duckdb.connect()
    for option in options[1:]:
        plan = con.sql(
            "EXPLAIN ANALYZE "
            + ONE_NIGHT.format(src=f"({lake_source(lake_dir, option)})", night=night)
        ).fetchall()[0][1]
        scanned = [
            line.strip(" │")
            for line in plan.splitlines()
            if "Total Files Read" in line or "Scanning Files" in line
        ]
        say(f"   pruning, {option}: {'; '.join(s.strip() for s in scanned) or '(see EXPLAIN)'}")


def goal2(lake_dir: Path, label: str, repeat: int) -> None:
    import duckdb

    from nightlake import Lake

    query = CROSS_NIGHT.format(src="images")
    floor = CROSS_NIGHT.format(src=f"read_parquet('{lake_dir}/one.parquet')")
    Lake(lake_dir).sql(query)  # imports and the macro files paid before timing

    def views_only():
        con = duckdb.connect()
        con.execute(Lake(lake_dir).view_sql())
        con.sql(query).fetchall()

    compacted = compacted_lake(lake_dir)
    Lake(compacted).sql(query)
    times = turns(
        {
            "duckdb.connect() on one file": lambda: duckdb.connect().sql(floor).fetchall(),
            "Lake(path).sql(q)": lambda: Lake(lake_dir).sql(query),
            "Lake(path).sql(q), compacted": lambda: Lake(compacted).sql(query),
            "Lake(path).connect() then q": lambda: Lake(lake_dir).connect().sql(query).fetchall(),
            "duckdb.connect() + view_sql only": views_only,
        },
        repeat,
    )
    report(
        f"goal 2, {label}: fresh Lake(path).sql(), in process",
        times,
        "duckdb.connect() on one file",
        3,
    )
    con = duckdb.connect()
    t0 = time.perf_counter()
    from nightlake.sql import load_macros

    for _ in range(repeat):
        load_macros(con)
    say(f"   load_macros alone: {(time.perf_counter() - t0) / repeat * 1e3:.1f} ms")


def goal3(lake_dir: Path, label: str, repeat: int) -> None:
    query = "select count(*) from images"
    floor_q = f"select count(*) from read_parquet('{lake_dir}/one.parquet')"
    py = str(BIN / "python")
    runs = {
        "python -c duckdb (floor)": lambda: run_process(
            [py, "-c", f"import duckdb; print(duckdb.sql({floor_q!r}).fetchall())"]
        )
    }
    runs["python -c pass"] = lambda: run_process([py, "-c", "pass"])
    for fmt in ("table", "csv", "json"):
        runs[f"nightlake sql --format {fmt}"] = lambda f=fmt: run_process(
            [str(BIN / "nightlake"), "sql", "--lake", str(lake_dir), "--format", f, query]
        )
    runs["nightlake --help"] = lambda: run_process([str(BIN / "nightlake"), "--help"])
    times = turns(runs, repeat)
    report(f"goal 3, {label}: nightlake sql as a process", times, "python -c duckdb (floor)", 1.5)
    imports_of(
        [str(BIN / "nightlake"), "sql", "--lake", str(lake_dir), "--format", "csv", query],
        "nightlake sql --format csv",
    )


def imports_of(argv: list[str], label: str, top: int = 12) -> None:
    """The heaviest top-level imports of a command (python -X importtime, cumulative)."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    err = subprocess.run(argv, capture_output=True, env=env).stderr.decode()
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cum_us, name = line[len("import time:") :].split("|")
        if not name[1:].startswith(" "):  # imported by the command itself, not by a module
            rows.append((int(cum_us), name.strip()))
    rows.sort(reverse=True)
    say(
        f"   imports of {label} (cumulative, top-level): "
        + ", ".join(f"{name} {us / 1e3:.0f} ms" for us, name in rows[:top])
    )


def ecsv_floor(path: Path, out: Path, digest: bool = False, sort: bool = False) -> None:
    """The floor of goal 4 in a process: pyarrow.csv reads the body, one zstd Parquet file.
    ``digest``: and the SHA-256 of the file's bytes on a second thread, as provenance needs;
    ``sort``: and the rows sorted as the lake keeps them (target, night, detector, visit,
    mjd) before they are written. Each is a reference row, not the goal's floor: with both,
    it is the same work as a convert's, done the plainest way."""
    code = f"""
import pyarrow.csv as pc, pyarrow.parquet as pq, sys
path = {str(path)!r}
if {digest}:
    import hashlib, threading
    def sha():
        with open(path, 'rb') as f:
            hashlib.file_digest(f, 'sha256').hexdigest()
    hashing = threading.Thread(target=sha)
    hashing.start()
with open(path, 'rb') as f:
    skip = 0
    for line in f:
        if not line.startswith(b'#'):
            break
        skip += 1
table = pc.read_csv(path, read_options=pc.ReadOptions(skip_rows=skip),
                    parse_options=pc.ParseOptions(delimiter=' '))
if {sort}:
    import pyarrow.compute as pa_compute
    keys = [(c, 'ascending') for c in ('fieldname', 'night', 'detector', 'visit', 'mjd')
            if c in table.column_names]
    order = pa_compute.sort_indices(table.select([c for c, _ in keys]), sort_keys=keys)
    table = table.combine_chunks().take(order)  # a take across the read's chunks costs 4x
pq.write_table(table, {str(out)!r}, compression='zstd')
if {digest}:
    hashing.join()
"""
    run_process([str(BIN / "python"), "-c", code])


def goal4_pieces(joined: Path, lake: Path, repeat: int) -> None:
    """CPU of the pieces of goal 4, each in one process (best of ``repeat``): the floor's own
    two, and what the convert does beyond them (the parts it writes are those of ``lake``)."""
    code = f"""
import hashlib, sys, time
from pathlib import Path
import pyarrow as pa, pyarrow.csv as pc, pyarrow.parquet as pq
from nightlake.ingest.convert import prefer_jemalloc
from nightlake.ingest.ecsv import read_ecsv
from nightlake.lake import write_parquet_temp
from nightlake.ingest.compact import ROW_GROUP_ROWS
prefer_jemalloc()
path, parts = {str(joined)!r}, sorted(Path({str(lake)!r}).glob('images/year=*/*.parquet'))
skip = sum(1 for line in open(path, 'rb') if line.startswith(b'#'))
tables = [pq.read_table(p, partitioning=None) for p in parts]
data = Path(path).read_bytes()
def cpu(fn):
    best = float('inf')
    for _ in range({repeat}):
        c0 = time.process_time(); fn(); best = min(best, time.process_time() - c0)
    return best
floor_table = pc.read_csv(path, read_options=pc.ReadOptions(skip_rows=skip),
                          parse_options=pc.ParseOptions(delimiter=' '))
def write_parts():
    for t, p in zip(tables, parts):
        write_parquet_temp(t, Path('/tmp') / p.name, row_group_size=ROW_GROUP_ROWS).unlink()
rows = {{
    'floor: pyarrow.csv read of the file': lambda: pc.read_csv(path,
        read_options=pc.ReadOptions(skip_rows=skip), parse_options=pc.ParseOptions(delimiter=' ')),
    'floor: its one zstd file written': lambda: pq.write_table(floor_table, '/tmp/floor.parquet',
        compression='zstd'),
    'read_ecsv (parse, hash, checks)': lambda: read_ecsv(path),
    'sha256 of the file (its bytes in memory)': lambda: hashlib.sha256(data).hexdigest(),
    f'the {{len(parts)}} compacted parts written': write_parts,
}}
for name, fn in rows.items():
    print(f'   {{name:<46}}{{cpu(fn) * 1e3:9.1f}} ms CPU')
"""
    out = subprocess.run([str(BIN / "python"), "-c", code], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    say("-- goal 4 pieces, each in one process, best of repeat")
    for line in out.stdout.splitlines():
        say(line)


def goal4(
    workdir: Path, joined: Path, label: str, repeat: int, compare: Path | None = None
) -> None:
    scratch = workdir / "scratch-convert"
    nightlake = [str(BIN / "nightlake"), "convert", str(joined), "--lake", str(scratch / "lake")]
    others = {}
    if compare:  # another tree's code (a checkout of an earlier commit), in the same turns
        env = {**os.environ, "PYTHONPATH": str(compare)}
        others["nightlake convert, --compare-src"] = lambda: run_process(nightlake, env=env)

    def clean(_name):
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)

    times = turns(
        {
            "pyarrow.csv -> one zstd file (floor)": lambda: ecsv_floor(
                joined, scratch / "one.parquet"
            ),
            "the floor + SHA-256 of the file (reference)": lambda: ecsv_floor(
                joined, scratch / "one.parquet", digest=True
            ),
            "the floor + SHA-256 + the lake's sort (reference)": lambda: ecsv_floor(
                joined, scratch / "one.parquet", digest=True, sort=True
            ),
            "nightlake convert": lambda: run_process(nightlake),
            **others,
        },
        repeat,
        setup=clean,
    )
    mb = joined.stat().st_size / 1e6
    report(
        f"goal 4, {label} ({mb:.1f} MB joined.collection): convert as a process",
        times,
        "pyarrow.csv -> one zstd file (floor)",
        1.3,
    )
    clean(None)
    run_process(nightlake)  # the lake whose parts the pieces write again
    if any((scratch / "lake").glob("images/year=*/*.parquet")):
        goal4_pieces(joined, scratch / "lake", repeat)
    py = str(BIN / "python")
    for module in ("astropy.time", "nightlake.ingest.taitime", "erfa"):
        t = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            proc = subprocess.run(
                [py, "-c", f"import pyarrow, numpy; import {module}"], capture_output=True
            )
            t.append(time.perf_counter() - t0)
            if proc.returncode:
                break
        base = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            run_process([py, "-c", "import pyarrow, numpy"])
            base.append(time.perf_counter() - t0)
        if not proc.returncode:
            say(f"   import {module} on top of pyarrow+numpy: {(min(t) - min(base)) * 1e3:.0f} ms")
    shutil.rmtree(scratch, ignore_errors=True)


def goal5(lake_dir: Path, label: str, repeat: int) -> None:
    """count(*) against a 3-column select of resolve_detrends('flat'), 10k flat records."""
    import numpy as np

    from nightlake import Lake
    from nightlake.detrends.detreg import OPEN_ENDED, make_records, write_db
    from nightlake.detrends.sync import sync

    lake = Lake(lake_dir)
    rng = np.random.default_rng(3)
    con = lake.connect()
    tmin, tmax, filters, bands = con.execute(
        "SELECT epoch(min(obs_time))::BIGINT, epoch(max(obs_time))::BIGINT, list(DISTINCT filter),"
        " list(DISTINCT band) FROM images"
    ).fetchone()
    con.close()
    codes = {i + 1: f for i, f in enumerate(filters)}
    codes.update({i + 101: b for i, b in enumerate(bands)})
    n = 10_000
    recs = np.zeros(n, dtype=make_records([]).dtype)
    recs["tstart"] = tmin - 86400 * 30 + rng.integers(0, tmax - tmin + 86400 * 30, n)
    ends = recs["tstart"] + rng.integers(86400, 60 * 86400, n).astype(np.uint64)
    recs["tstop"] = np.where(rng.random(n) < 0.05, np.uint64(OPEN_ENDED), ends)
    recs["treg"] = recs["tstart"] + rng.integers(0, 10 * 86400, n)
    recs["type"], recs["filter"] = 3, rng.choice(list(codes), n)
    recs["ccd"] = rng.integers(1, 63, n)
    recs["filename"] = [f"/masters/flat-{i:06d}.fits".encode() for i in range(n)]
    db = lake_dir.parent / f"{lake_dir.name}-detrend.db"
    write_db(db, recs, codes)
    sync(lake, db)
    queries = {
        "3-column select (floor)": "SELECT count(detrend_filename), count(visit), "
        "count(detector) FROM resolve_detrends('flat')",
        "count(*)": "SELECT count(*) FROM resolve_detrends('flat')",
        "count(detrend_filename)": "SELECT count(detrend_filename) FROM resolve_detrends('flat')",
        "select * (all columns)": "SELECT * FROM resolve_detrends('flat')",
    }
    con = lake.connect()

    def fresh(q):
        return lambda: con.sql(q).to_arrow_table()

    times = turns({k: fresh(q) for k, q in queries.items()}, repeat)
    report(
        f"goal 5, {label}: resolve_detrends('flat') x {n} records, one connection",
        times,
        "3-column select (floor)",
        1.5,
    )


def goal6(workdir: Path, scale: float, repeat: int, compare: Path | None = None) -> None:
    """Add the last night to a lake of all the others, against that night into an empty lake
    (``compare``: and with another tree's code, into copies of the same lakes)."""
    per_night, _ = survey(workdir, scale, 62)
    files = sorted(per_night.glob("*.collection"))
    last = files[-1]
    base = workdir / f"scratch-add-s{scale:g}"
    full = base / "full-seed"
    if not (base / "done").exists():
        shutil.rmtree(base, ignore_errors=True)
        src = base / "others"
        src.mkdir(parents=True)
        for f in files[:-1]:
            os.symlink(f, src / f.name)
        run_process([str(BIN / "nightlake"), "convert", str(src), "--lake", str(full)])
        (base / "done").touch()
    seeds = {"at the bound": base / "bound-seed"}
    if not (base / "done-variants").exists():
        bound_lake(full, seeds["at the bound"], last)
        (base / "done-variants").touch()
    # each seed's footer cache as the code timed leaves it (its convert would have): a cache
    # of another format reads as none, and the add would read every footer
    env = {**os.environ, "PYTHONPATH": str(compare)} if compare else None
    lakes = {"empty": None, "full": full, **seeds}
    for seed in (full, *seeds.values()):
        refresh_footers(seed)
    if compare:
        for name, seed in (("full", full), ("at the bound", seeds["at the bound"])):
            mine = base / f"{name}, compared-seed"
            shutil.rmtree(mine, ignore_errors=True)
            shutil.copytree(seed, mine, symlinks=True, copy_function=os.link)
            refresh_footers(mine, env)
            lakes[f"{name}, compared"] = mine

    def setup(name):
        for d, seed in lakes.items():
            shutil.rmtree(base / d, ignore_errors=True)
            if seed is not None:
                # hard links: the files keep the seed's inodes, so the footer cache beside
                # the lake stays valid, as it does for a lake converted where it lies (every
                # writer replaces a file by rename, so the seed is never written through)
                shutil.copytree(seed, base / d, symlinks=True, copy_function=os.link)

    nl = str(BIN / "nightlake")

    def add(d, env=None):
        return lambda: run_process([nl, "convert", str(last), "--lake", str(base / d)], env=env)

    n = len(files) - 1
    others = {}
    if compare:
        others = {
            f"into the lake of {n}, --compare-src": add("full, compared", env),
            "its part at PART_ROWS rows, --compare-src": add("at the bound, compared", env),
        }
    times = turns(
        {
            "one night into an empty lake (floor)": add("empty"),
            f"one night into the compacted lake of {n}": add("full"),
            "the same, its part at PART_ROWS rows": add("at the bound"),
            **others,
        },
        repeat,
        setup=setup,
    )
    report(
        f"goal 6, scale {scale:g}: add one night ({last.name})",
        times,
        "one night into an empty lake (floor)",
        2,
    )


def refresh_footers(lake: Path, env: dict | None = None) -> None:
    """Bring ``lake``'s footer cache up to its files with the code of ``env``'s PYTHONPATH
    (a tree without the cache: nothing)."""
    code = (
        "import sys; from pathlib import Path; from nightlake.lake import LakeDirectory\n"
        "try:\n    from nightlake.ingest.compact import Footers\n"
        "except ImportError:\n    sys.exit()\n"
        "Footers.refresh(LakeDirectory(Path(sys.argv[1])))"
    )
    run_process([str(BIN / "python"), "-c", code, str(lake)], env=env)


def bound_lake(full: Path, out: Path, night: Path) -> None:
    """A copy of ``full`` whose part holding ``night``'s target holds PART_ROWS rows (its rows
    tiled, visit renumbered; its records as they were): what adding a night costs when its
    part is as large as a part gets."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from nightlake.ingest.compact import PART_ROWS, ROW_GROUP_ROWS, Footers
    from nightlake.lake import LakeDirectory, part_first, write_parquet_temp

    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(full, out, symlinks=True)
    year, target = night.stem.split("_", 1)[0][:4], night.stem.split("_", 1)[1]
    parts = sorted(LakeDirectory(out).images_dir.glob(f"year={year}/*.parquet"), key=part_first)
    path = [p for p in parts if part_first(p) <= target][-1]
    table = pq.read_table(path, partitioning=None)
    visit = table.schema.get_field_index("visit")
    copies = [
        table.set_column(visit, "visit", pc.add(table["visit"], k * 10_000_000))
        for k in range(-(-PART_ROWS // table.num_rows))
    ]
    tiled = pa.concat_tables(copies).slice(0, PART_ROWS)
    sort = [(c, "ascending") for c in ("target", "night", "detector", "visit")]
    tiled = tiled.sort_by(sort).replace_schema_metadata(table.schema.metadata)
    write_parquet_temp(tiled, path, row_group_size=ROW_GROUP_ROWS).replace(path)
    Footers.refresh(LakeDirectory(out))  # as the convert that left the lake so would have


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goals", default="1,2,3,4,5,6")
    parser.add_argument("--scales", default="0.1,1.0")
    parser.add_argument("--years", type=int, default=10, help="synthetic lake for goal 1 (0: none)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=HERE / "out")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--compare-src",
        type=Path,
        default=None,
        help="goals 4 and 6 also run convert with PYTHONPATH=this (a `git archive` of older code)",
    )
    parser.add_argument(
        "--tenfold", action="store_true", help="goal 1 also on the lake's rows x10 (tenfold_lake)"
    )
    parser.add_argument(
        "--skip-detector", action="store_true", help="goal 1 without the per-detector layout"
    )
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()  # goal 6 links the survey's files from elsewhere
    goals = {int(g) for g in args.goals.split(",")}
    # an install has nightlake byte-compiled (pip does it); a checkout run with
    # PYTHONDONTWRITEBYTECODE=1 would compile every module in every process measured
    compiled = [str(REPO / "src"), *([str(args.compare_src)] if args.compare_src else [])]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *compiled], check=True)
    scales = [float(s) for s in args.scales.split(",")]
    import duckdb
    import pyarrow

    say(
        f"# bench/speed.py {dt.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores, "
        f"duckdb {duckdb.__version__}, pyarrow {pyarrow.__version__}; repeat {args.repeat}; "
        "best (median) ms, ratio to the floor best (median)"
    )
    if 4 in goals:
        fixture = FIXTURES / "joined" / "joined.collection"
        goal4(args.workdir, fixture, "fixture scale", args.repeat, args.compare_src)
    for scale in scales:
        label = f"scale {scale:g}"
        if goals & {1, 2, 3, 5}:
            lake_dir = survey_lake(args.workdir, scale)
        if 1 in goals:
            goal1(lake_dir, label, args.repeat)
            if args.tenfold:
                goal1(tenfold_lake(lake_dir), label + ", each file's rows x10", args.repeat)
            if not args.skip_detector:
                detector = survey_lake(args.workdir, scale, ("target", "night", "detector"))
                goal1(detector, label + ", --partition-by target,night,detector", args.repeat)
        if 2 in goals:
            goal2(lake_dir, label, args.repeat)
        if 3 in goals:
            goal3(lake_dir, label, args.repeat)
        if 4 in goals:
            joined = survey(args.workdir, scale, 62)[1]
            goal4(args.workdir, joined, label, args.repeat, args.compare_src)
        if 5 in goals:
            goal5(lake_dir, label, args.repeat)
        if 6 in goals:
            goal6(args.workdir, scale, args.repeat, args.compare_src)
    if 1 in goals and args.years:
        goal1(
            synthetic_lake(args.workdir, args.years),
            f"synthetic {args.years} years",
            max(2, args.repeat // 2),
        )
    out = args.out or args.workdir / f"speed-{dt.date.today()}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
