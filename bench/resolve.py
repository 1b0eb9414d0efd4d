"""Benchmark detrend resolution (run by hand: .venv/bin/python bench/resolve.py [--images N]).

1. ``resolve_detrends`` over N image rows (default 1,000,000) x 10,000 flat records, against
   the Python reference applied per image with numpy (timed on a sample, extrapolated).
   Goal: >= 30x faster. Also the alternatives weighed in docs/design.md: the same interval
   join written as a plain join (DuckDB: hash join on the CCD + residual range filter) and
   with ``SET prefer_range_joins = true`` (IEJoin).
2. ``detsearch`` for one image as a full process against ``python -c pass``. Goal: <= 15x.
3. Batch ``detsearch`` on 1,000 image headers in one process: images/s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nightlake import Lake
from nightlake.detrends.detreg import OPEN_ENDED, make_records, read_db, write_db
from nightlake.detrends.rules import Image, Resolver
from nightlake.detrends.sync import sync as mirror_sync

T0 = 1_546_300_800  # 2019-01-01
SPAN = 3 * 365 * 86400
BANDS = ["g", "r", "i", "z", "VR"]
PHYSICAL = {b: f"{b} DECam c000{i} 5000.0 1000.0" for i, b in enumerate(BANDS)}
BIN = Path(sys.executable).parent


def build(tmp: Path, n_images: int, n_records: int, rng, files: int = 8) -> tuple[Lake, Path]:
    """A DetReg database of ``n_records`` flats and a lake of ``n_images`` images in ``files``
    nightly files, generated one file at a time (10M rows never sit in memory at once)."""
    filters = {i + 1: PHYSICAL[b] for i, b in enumerate(BANDS)}
    filters.update({i + 11: b for i, b in enumerate(BANDS)})  # some records name the band
    codes = np.array(list(filters))
    tstart = T0 - 86400 * 30 + rng.integers(0, SPAN, n_records)
    length = rng.integers(86400, 120 * 86400, n_records)
    tstop = np.where(rng.random(n_records) < 0.05, OPEN_ENDED, tstart + length).astype(np.uint64)
    recs = make_records([])
    recs = np.zeros(n_records, dtype=recs.dtype)
    recs["tstart"], recs["tstop"] = tstart, tstop
    recs["treg"] = tstart + rng.integers(0, 10 * 86400, n_records)
    recs["type"], recs["filter"] = 3, rng.choice(codes, n_records)
    recs["ccd"] = rng.integers(1, 63, n_records)
    recs["filename"] = [f"/masters/flat-{i:06d}.fits".encode() for i in range(n_records)]
    db_path = tmp / "detrend.db"
    write_db(db_path, recs, filters)

    bounds = [k * n_images // files for k in range(files + 1)]
    for k, (start, stop) in enumerate(zip(bounds, bounds[1:])):
        out = tmp / "lake" / "images" / "target=A0a" / f"night=2019{k:04d}" / "part.parquet"
        out.parent.mkdir(parents=True)
        pq.write_table(_images(rng, start, stop), out)
    lake = Lake(tmp / "lake")
    mirror_sync(lake, db_path)
    return lake, db_path


def _images(rng, start: int, stop: int) -> pa.Table:
    """Synthetic images ``visit`` = start … stop - 1."""
    n = stop - start
    band = rng.choice(BANDS, n)
    obs_us = (T0 + rng.integers(0, SPAN, n)).astype(np.int64) * 1_000_000
    obs_us += rng.integers(0, 1_000_000, n)
    return pa.table(
        {
            "visit": pa.array(np.arange(start, stop, dtype=np.int64)),
            "detector": pa.array(rng.integers(1, 63, n).astype(np.int64)),
            "filter": pa.array([PHYSICAL[b] for b in band.tolist()]),
            "band": pa.array(band.tolist()),
            "exposureTime": pa.array(rng.choice([60.0, 300.0, 600.0], n)),
            "obs_time": pa.array(obs_us, type=pa.timestamp("us")),
        }
    )


def timed(fn, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


PLAIN_JOIN = """
SELECT i.visit, arg_max(d.record_index, (d.treg_s, d.record_index)) AS rec
FROM images i JOIN detrends d
  ON d.ccd = i.detector AND (d.filter = i.filter OR d.filter = i.band)
 AND d.tstart <= i.obs_time AND i.obs_time < coalesce(d.tstop, 'infinity'::TIMESTAMP)
WHERE d.type = 'flat' AND d.tstop_s > d.tstart_s
GROUP BY i.visit
"""


def bench_batch(lake: Lake, db_path: Path, n_images: int, sample: int) -> None:
    con = lake.connect()
    con.execute("SET threads = 2")
    plan = "\n".join(
        r[1] for r in con.sql("EXPLAIN SELECT * FROM resolve_detrends('flat')").fetchall()
    )
    print(f"plan of resolve_detrends: {'Asof Join' if 'Asof Join' in plan else 'NO ASOF JOIN'}")
    results = {}
    for mode in ("exact", "recent"):
        results[mode] = timed(
            lambda: con.execute(
                "CREATE OR REPLACE TEMP TABLE out AS "
                f"SELECT * FROM resolve_detrends('flat', mode := '{mode}')"
            )
        )
        found = con.sql("SELECT count(detrend_index) FROM out").fetchall()[0][0]
        print(
            f"resolve_detrends {mode:6}: {results[mode]:.2f} s for {n_images:,} images "
            f"({n_images / results[mode]:,.0f} images/s; {found:,} with a flat)"
        )

    def alternative(setting: str) -> str:
        con.execute(f"SET prefer_range_joins = {setting}")
        try:
            seconds = timed(
                lambda: con.execute(f"CREATE OR REPLACE TEMP TABLE p AS {PLAIN_JOIN}"), 1
            )
            return f"{seconds:.2f} s"
        except duckdb.Error as exc:  # DuckDB 2.0.1 plans some small inputs it cannot run
            return f"not run ({str(exc).splitlines()[0]})"
        finally:
            con.execute("SET prefer_range_joins = false")

    plain, iejoin = alternative("false"), alternative("true")
    print(
        f"alternative, exact mode only: plain join (hash on ccd + range residual) {plain}, "
        f"IEJoin (prefer_range_joins) {iejoin}"
    )

    db = read_db(db_path)
    resolver = Resolver(db.records, db.filters)
    rows = con.sql(
        f"SELECT detector, epoch_us(obs_time), filter, band, exposureTime "
        f"FROM images USING SAMPLE {sample} ROWS"
    ).fetchall()
    images = [Image(d, t, f, b, e) for d, t, f, b, e in rows]
    for mode in ("exact", "recent"):
        start = time.perf_counter()
        for image in images:
            resolver.choose("flat", image, mode)
        per_image = (time.perf_counter() - start) / len(images)
        reference = per_image * n_images
        print(
            f"python reference {mode:6}: {per_image * 1e6:.0f} us/image -> {reference:.0f} s for "
            f"{n_images:,} (extrapolated from {len(images):,}); resolve_detrends is "
            f"{reference / results[mode]:.0f}x faster (goal >= 30x)"
        )
    con.close()


def median_run(argv, n=15) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(argv, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_detsearch(tmp: Path, db_path: Path, rng) -> None:
    from astropy.io import fits

    paths = []
    for i in range(1000):
        header = fits.Header()
        header["CCDNUM"] = int(rng.integers(1, 63))
        header["FILTER"] = PHYSICAL[BANDS[i % 5]]
        header["EXPTIME"] = 300.0
        header["MJD-OBS"] = 40587 + float(T0 + rng.integers(0, SPAN)) / 86400
        path = tmp / f"img{i:04d}.fits"
        fits.PrimaryHDU(np.zeros((8, 8), np.int16), header=header).writeto(path)
        paths.append(path)
    listing = tmp / "images.txt"
    listing.write_text("\n".join(map(str, paths)) + "\n")

    python = median_run([sys.executable, "-c", "pass"])
    one = median_run(
        [
            str(BIN / "detsearch"),
            "--db",
            str(db_path),
            "--image",
            str(paths[0]),
            "--type",
            "flat",
            "--mode",
            "recent",
        ]
    )
    print(
        f"detsearch one image: {one * 1000:.0f} ms, python -c pass: {python * 1000:.0f} ms "
        f"-> {one / python:.1f}x (goal <= 15x)"
    )
    batch = median_run(
        [
            str(BIN / "detsearch"),
            "--db",
            str(db_path),
            "--image",
            f"@{listing}",
            "--type",
            "flat",
            "--mode",
            "recent",
        ],
        n=3,
    )
    print(f"detsearch batch: 1,000 images in {batch:.2f} s -> {1000 / batch:,.0f} images/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=2_000)
    args = parser.parse_args()
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory(prefix="nl-bench-resolve-") as tmpdir:
        tmp = Path(tmpdir)
        start = time.perf_counter()
        lake, db_path = build(tmp, args.images, args.records, rng)
        print(
            f"built {args.images:,} images x {args.records:,} flats in "
            f"{time.perf_counter() - start:.1f} s"
        )
        bench_batch(lake, db_path, args.images, args.sample)
        bench_detsearch(tmp, db_path, rng)


if __name__ == "__main__":
    main()
