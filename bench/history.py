"""Benchmark previews and journal diffs against one ``resolve_detrends`` (run by hand).

    .venv/bin/python bench/history.py [--images 1000000] [--records 10000] [--turns 3]

The lake and the flat records are bench/resolve.py's (N images x 10,000 flats over 62 CCDs),
written here through ``detregister`` so that the database has a journal (the 10,000 records in
200 adds of 50, then one master more). Every command runs as a fresh process, in turns (each
preview, then the resolve, then again), so none profits from a cache the others lack:

- resolve:        ``nightlake sql --lake L -o resolved.parquet "FROM resolve_detrends('flat')"``
- preview add:    ``detregister add --preview --lake L master.fits`` (one CCD; both modes)
- preview delete: ``detregister delete --preview --lake L --type flat --filter 'r DECam …'``
                  (a fifth of the records, every CCD; both modes)
- changed-since:  ``nightlake resolve --changed-since T`` with T 100 adds back (5,000 records
                  replayed on each side; both modes)

Goal: a preview <= 2.5x one resolve. Prints the medians, best times and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from resolve import BANDS, PHYSICAL, T0, build  # noqa: E402  (the bench lake of resolve.py)

BIN = Path(sys.executable).parent
BATCH = 50


def journaled(tmp: Path, db_path: Path) -> tuple[Path, str]:
    """The records of ``db_path`` registered again in batches through the journaled writer;
    returns the new database and the time of the middle batch."""
    from nightlake.detrends.detreg import add_records, init_db, read_db, read_journal

    src = read_db(db_path)
    out = tmp / "journaled.db"
    init_db(out)
    middle = len(src) // BATCH // 2
    when = ""
    for n, start in enumerate(range(0, len(src), BATCH)):
        add_records(out, src.records[start : start + BATCH], filters=src.filters)
        if n == middle:
            when = read_journal(out)[-1]["time"]
    return out, when


def master(tmp: Path) -> Path:
    from astropy.io import fits

    hdu = fits.PrimaryHDU(np.zeros((2, 2), np.float32))
    hdu.header.update(
        IMAGETYP="flat",
        FILTER=PHYSICAL["r"],
        CCDNUM=31,
        TV_START=T0 + 200 * 86400,
        TV_STOP=T0 + 260 * 86400,
    )
    path = tmp / "flat_r_c31.fits"
    hdu.writeto(path)
    return path


def run(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed: {done.stderr}")
    return elapsed


def commands(tmp: Path, lake: Path, db: Path, since: str) -> dict[str, list[str]]:
    nl, dr = str(BIN / "nightlake"), str(BIN / "detregister")
    preview = ["--db", str(db), "--preview", "--lake", str(lake)]
    return {
        "resolve": [nl, "sql", "--lake", str(lake), "-o", str(tmp / "resolved.parquet")]
        + ["FROM resolve_detrends('flat')"],
        "preview add": [dr, "add", *preview, str(master(tmp))],
        "preview delete": [dr, "delete", *preview, "--type", "flat", "--filter", PHYSICAL["r"]],
        "changed-since": [nl, "resolve", "--lake", str(lake), "--db", str(db)]
        + ["--changed-since", since],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(5)
    assert "r" in BANDS
    with tempfile.TemporaryDirectory(prefix="nl-bench-history-") as tmpdir:
        tmp = Path(tmpdir)
        start = time.perf_counter()
        lake, plain = build(tmp, args.images, args.records, rng)
        db, since = journaled(tmp, plain)
        from nightlake.detrends.sync import sync

        sync(lake, db)
        print(
            f"built {args.images:,} images x {args.records:,} flats "
            f"({args.records // BATCH} journaled adds) in {time.perf_counter() - start:.1f} s"
        )
        argvs = commands(tmp, lake.path, db, since)
        times: dict[str, list[float]] = {name: [] for name in argvs}
        for _ in range(args.turns):
            for name, argv in argvs.items():
                times[name].append(run(argv))
        base = statistics.median(times["resolve"])
        for name, values in times.items():
            med = statistics.median(values)
            print(
                f"{name:<15} median {med:6.2f} s  best {min(values):6.2f} s  "
                f"({', '.join(f'{v:.2f}' for v in values)})  ratio {med / base:.2f}x"
            )
        print("goal: a preview <= 2.5x one resolve")


if __name__ == "__main__":
    main()
