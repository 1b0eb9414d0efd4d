"""Benchmark resolve and convert on a Dask cluster (run by hand: python bench/scaleout.py).

Sections (``--sections``, default all):

- ``resolve``: for each ``--images`` size (default 1M and 10M) × R flat records (default
  100,000), in 8 nightly files generated one at a time (bench/resolve.py's builder): the local
  resolve (one DuckDB query, one file) and the Dask path with 1 and 2 local workers (processes,
  one thread each; cluster start excluded), in turns, ``--repeat`` times.
- ``chunk``: the per-chunk throughput measured alone: one chunk (one 1/8 file) resolved in this
  process against a timeline built beforehand (what one worker does per task), rows/s.
- ``timeline``: ``detrend_timeline``'s rows, Arrow size and build time at ``--timeline-records``
  (default 10^6) records over a lake of 10^5 images.
- ``convert``: ``convert`` of the survey collections (data/fixtures/make_fixtures.write_survey,
  ``--convert-scale``) into a fresh lake: local (threads) vs Dask with 1 and 2 workers.

Goal on a 2-core machine (no speed-up possible, so low overhead): resolve with 2 workers
<= 1.5x the local path at 1M, <= 1.3x at 10M. Prints median and best of the turns.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "data" / "fixtures"))
from resolve import build  # noqa: E402

from nightlake import Lake  # noqa: E402
from nightlake.detrends.chunks import (  # noqa: E402
    Chunk,
    resolve_chunk,
    result_schema,
    timeline,
    write_assignments_chunked,
)
from nightlake.detrends.rules import write_assignments  # noqa: E402
from nightlake.scaleout import DaskExecutor, Executor  # noqa: E402


def cpu_seconds() -> float:
    """CPU time of this process, every thread (DuckDB's, pyarrow's) included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_of(runner: DaskExecutor | None) -> float:
    """CPU time of this process and of the runner's workers."""
    workers = runner.client.run(cpu_seconds).values() if runner is not None else []
    return cpu_seconds() + sum(workers)


Path_ = tuple[Callable[[], object], DaskExecutor | None]


def in_turns(paths: dict[str, Path_], repeat: int) -> dict[str, list[tuple[float, float]]]:
    """Each path once per turn (A, B, C, A, B, C, …): load on the shared machine hits all.
    (wall, CPU) seconds of each run; CPU time (this process and the workers) hardly depends on
    the machine's load, wall time does."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
    for turn in range(repeat):
        for name, (fn, runner) in paths.items():
            cpu, start = cpu_of(runner), time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start, cpu_of(runner) - cpu))
            wall, used = times[name][-1]
            print(f"  turn {turn + 1}: {name:<16} {wall:7.2f} s wall {used:7.2f} s CPU", flush=True)
    return times


def report(title: str, times: dict[str, list[tuple[float, float]]], rows: int, base: str) -> None:
    print(f"{title}: median (best); wall, then CPU")
    for k, what in enumerate(("wall", "CPU ")):
        ref = [t[k] for t in times[base]]
        for name, runs in times.items():
            ts = [t[k] for t in runs]
            med, best = statistics.median(ts), min(ts)
            print(
                f"  {what} {name:<16} {med:7.2f} s ({best:6.2f})  {rows / med:12,.0f} rows/s  "
                f"{med / statistics.median(ref):5.2f}x ({best / min(ref):4.2f}x) {base}"
            )


def bench_resolve(tmp: Path, n: int, records: int, repeat: int) -> None:
    lake, _ = build(tmp, n, records, np.random.default_rng(7))
    chunks = [[f] for f in lake.image_files()]
    out = tmp / "out"
    out.mkdir()
    with DaskExecutor(workers=1) as one, DaskExecutor(workers=2) as two:
        paths = {
            "local": (
                lambda: write_assignments(lake, "flat", "exact", out / "local.parquet"),
                None,
            ),
            "dask, 1 worker": (
                lambda: write_assignments_chunked(
                    lake, "flat", "exact", out / "dask1", one, chunks=chunks
                ),
                one,
            ),
            "dask, 2 workers": (
                lambda: write_assignments_chunked(
                    lake, "flat", "exact", out / "dask2", two, chunks=chunks
                ),
                two,
            ),
        }
        times = in_turns(paths, repeat)
    report(f"resolve, {n:,} images x {records:,} records, {len(chunks)} chunks", times, n, "local")


def bench_chunk(tmp: Path, n: int, records: int, repeat: int) -> None:
    lake, _ = build(tmp, n, records, np.random.default_rng(7))
    tl = timeline(lake, "flat", "exact")
    schema = result_schema(lake, "flat", "exact")
    first = lake.image_files()[0]
    chunk = Chunk(str(lake.path), (str(first),), str(tmp / "one.parquet"), "flat")
    rows = resolve_chunk(chunk, timeline=tl, schema=schema)[0]
    times = in_turns(
        {"one chunk": (lambda: resolve_chunk(chunk, timeline=tl, schema=schema), None)}, repeat
    )
    report(f"per chunk ({rows:,} rows, timeline of {records:,} records)", times, rows, "one chunk")


def bench_timeline(tmp: Path, records: int, repeat: int) -> None:
    lake, _ = build(tmp, 100_000, records, np.random.default_rng(7))
    built: list = []  # the first timeline, for its size

    def build_one() -> None:
        tl = timeline(lake, "flat", "exact")
        built[:] = built or [tl]

    times = in_turns({"timeline": (build_one, None)}, repeat)
    tl = built[0]
    print(f"timeline at {records:,} records: {tl.num_rows:,} rows, {tl.nbytes / 1e6:.1f} MB Arrow")
    report(f"timeline build at {records:,} records", times, records, "timeline")


def bench_convert(tmp: Path, scale: float, repeat: int) -> None:
    from make_fixtures import write_survey

    from nightlake.ingest.convert import convert, prefer_jemalloc

    prefer_jemalloc()
    sources = write_survey(tmp / "survey", scale=scale)
    size = sum(p.stat().st_size for p in sources)

    def fresh(executor: Executor | None) -> Callable[[], object]:
        def run() -> None:
            shutil.rmtree(tmp / "lake", ignore_errors=True)
            report_ = convert(Lake(tmp / "lake"), [tmp / "survey"], executor=executor)
            assert report_.ok, report_.failed

        return run

    with DaskExecutor(workers=1) as one, DaskExecutor(workers=2) as two:
        paths = {
            "local": (fresh(None), None),
            "dask, 1 worker": (fresh(one), one),
            "dask, 2 workers": (fresh(two), two),
        }
        times = in_turns(paths, repeat)
    rows = Lake(tmp / "lake").connect().sql("SELECT count(*) FROM images").fetchall()[0][0]
    stored = sum(p.stat().st_size for p in Lake(tmp / "lake").image_files())
    print(f"lake: {stored / 1e6:.0f} MB of Parquet, {stored / rows:.0f} bytes per row")
    report(
        f"convert, scale {scale} ({len(sources)} files, {size / 1e6:.0f} MB, {rows:,} rows)",
        times,
        rows,
        "local",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="resolve,chunk,timeline,convert")
    parser.add_argument("--images", default="1000000,10000000")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--timeline-records", type=int, default=1_000_000)
    parser.add_argument("--convert-scale", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sections = args.sections.split(",")
    sizes = [int(n) for n in args.images.split(",")]

    def run(section: Callable[[Path], None]) -> None:
        with tempfile.TemporaryDirectory(prefix="nl-scaleout-") as tmp:
            section(Path(tmp))

    if "chunk" in sections:
        run(lambda tmp: bench_chunk(tmp, max(sizes), args.records, args.repeat))
    if "resolve" in sections:
        for n in sizes:
            run(lambda tmp, n=n: bench_resolve(tmp, n, args.records, args.repeat))
    if "timeline" in sections:
        run(lambda tmp: bench_timeline(tmp, args.timeline_records, args.repeat))
    if "convert" in sections:
        run(lambda tmp: bench_convert(tmp, args.convert_scale, args.repeat))


if __name__ == "__main__":
    main()
