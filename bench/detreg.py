"""DetReg speed, run by hand: ``python bench/detreg.py [--records N] [--masters M]``.

1. Reading a 100,000-record database into Arrow (``read_db(path).to_arrow()``, validation
   included) against ``numpy.fromfile`` of the same record bytes (the baseline; goal ≤ 3×).
2. Registering 1,000 master images in one ``detregister add`` call (header reading, one lock,
   one rewrite), into an empty database and into the 100,000-record one.

Prints records/s and ratios; never asserts on time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def best_interleaved(fns, repeat: int) -> list[float]:
    """Best time of each function, the functions taking turns (a baseline and its rival see
    the same moments of a noisy machine, and the same cache state)."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def build_database(path: Path, n: int, layout: str, byteorder: str) -> None:
    from nightlake.detrends.detreg import OPEN_ENDED, make_records, write_db

    rng = np.random.default_rng(42)
    records = make_records([])
    records = np.zeros(n, dtype=records.dtype)
    records["tstart"] = 1_350_000_000 + rng.integers(0, 10**8, n)
    records["tstop"] = np.where(rng.random(n) < 0.1, OPEN_ENDED, records["tstart"] + 86400 * 30)
    records["treg"] = 1_500_000_000 + np.arange(n)
    records["sigma"] = rng.random(n).astype(np.float32)
    records["clipsigma"] = rng.random(n).astype(np.float32)
    records["type"] = rng.integers(1, 6, n)
    records["filter"] = rng.integers(1, 8, n)
    records["ccd"] = rng.integers(1, 63, n)
    records["filename"] = [
        f"/deep/masters/{2012 + i % 8}/c{i % 62 + 1:02d}/master_{i:07d}.fits".encode()
        for i in range(n)
    ]
    if layout == "ILP32":
        records["tstart"] %= 2**31
        records["treg"] %= 2**31
        records["tstop"] = np.where(
            records["tstop"] == OPEN_ENDED, OPEN_ENDED, records["tstart"] + 86400
        )
    write_db(
        path, records, {i: f"filter-{i}" for i in range(1, 8)}, layout=layout, byteorder=byteorder
    )


def bench_read(tmp: Path, n: int, repeat: int) -> None:
    from nightlake.detrends.detreg import read_db, record_dtype

    print(f"reading {n:,} records into Arrow (best of {repeat})")
    for layout, byteorder in [("LP64", "little"), ("LP64", "big"), ("ILP32", "little")]:
        path = tmp / f"read-{layout}-{byteorder}.db"
        build_database(path, n, layout, byteorder)
        header = path.stat().st_size - (-(-n * record_dtype(layout).itemsize // 2880) * 2880)
        dtype = record_dtype(layout, byteorder)
        base, ours, just_read = best_interleaved(
            [
                lambda p=path, d=dtype, h=header: np.fromfile(p, dtype=d, count=n, offset=h),
                lambda p=path: read_db(p).to_arrow(),
                lambda p=path: read_db(p),
            ],
            repeat,
        )
        print(
            f"  {layout:5s} {byteorder:6s}  numpy.fromfile {base * 1e3:7.2f} ms "
            f"({n / base / 1e6:6.1f} M rec/s)   read_db+to_arrow {ours * 1e3:7.2f} ms "
            f"({n / ours / 1e6:5.2f} M rec/s)   ratio {ours / base:4.1f}x "
            f"(read_db alone {just_read / base:4.1f}x)"
        )


def bench_register(tmp: Path, masters: int, existing: int) -> None:
    from astropy.io import fits

    from nightlake.cli.detreg_cmds import main
    from nightlake.detrends.detreg import init_db, read_db

    directory = tmp / "masters"
    directory.mkdir()
    files = []
    for i in range(masters):
        hdu = fits.PrimaryHDU(np.zeros((4, 4), np.float32))
        hdu.header.update(
            IMAGETYP="dome flat",
            FILTER=f"filter-{i % 5}",
            CCDNUM=i % 62 + 1,
            TV_START=f"2014-09-{i % 28 + 1:02d}T00:00:00",
            TV_STOP="never",
            SIGMA=1.5,
            CLIPSIG=1.2,
        )
        path = directory / f"flat_{i:05d}.fits"
        hdu.writeto(path)
        files.append(str(path))
    print(f"registering {masters:,} masters in one `detregister add` call")
    for label, n in [("empty database", 0), (f"{existing:,}-record database", existing)]:
        db = tmp / f"register-{n}.db"
        if n:
            build_database(db, n, "LP64", "little")
        else:
            init_db(db)
        start = time.perf_counter()
        try:
            main(["add", "--db", str(db), *files])
        except SystemExit as exc:
            if exc.code:
                raise
        elapsed = time.perf_counter() - start
        assert len(read_db(db)) == n + masters
        print(f"  into an {label}: {elapsed:6.2f} s, {masters / elapsed:7.0f} records/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--masters", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nightlake-bench-") as tmp:
        bench_read(Path(tmp), args.records, args.repeat)
        bench_register(Path(tmp), args.masters, args.records)


if __name__ == "__main__":
    main()
