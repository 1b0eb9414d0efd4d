"""The SQL macros and detsearch agree with the Python reference (resolve.py) on random cases.

Random databases mix overlapping ranges, identical treg, open-ended and empty ranges, records
that start after the images, darks of several exposure times and filters named by physical
name, band or an unknown code; random images sit on, just before and just after boundaries.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nightlake.detrends.rules import DETREND_TYPES, MODES, Image, Resolver

from .conftest import FILTERS, OPEN, T0, VR, utc, write_detreg, write_images

STEP = 100  # seconds between the grid points records and images are drawn on
FILTER_PAIRS = [
    (VR, "VR"),
    (FILTERS[3], "g"),
    ("r DECam SDSS c0002 6415.0 1480.0", "r"),
    (None, None),
    ("i", None),
]


@st.composite
def record(draw, focus):
    # Most records share one type per example, so that overlaps and ties happen often.
    kind = draw(st.one_of(st.just(focus), st.just(focus), st.sampled_from(DETREND_TYPES)))
    code = {"bias": 1, "dark": 2, "flat": 3, "fringe": 4, "mask": 5}[kind]
    if kind == "dark":
        filt = draw(st.sampled_from([60, 300, 600, 1200]))
    elif kind in ("flat", "fringe"):
        filt = draw(st.sampled_from([1, 2, 2, 3, 4, 9]))  # 9: a code missing from the table
    else:
        filt = draw(st.sampled_from([-1, -1, 1]))
    tstart = T0 + STEP * draw(st.integers(-6, 6))
    length = draw(st.one_of(st.integers(-1, 6), st.just(None)))
    tstop = OPEN if length is None else tstart + STEP * length
    return dict(
        tstart=tstart,
        tstop=tstop,
        treg=draw(st.integers(1, 2)),
        type=code,
        filter=filt,
        ccd=draw(st.integers(1, 2)),
        sigma=1.5,
        clipsigma=2.5,
        filename=f"/masters/{kind}-{draw(st.integers(0, 999))}.fits",
        flag1=draw(st.integers(-2, 2)),
        flag2=0,
    )


@st.composite
def records(draw):
    focus = draw(st.sampled_from(DETREND_TYPES))
    return draw(st.lists(record(focus), max_size=14))


@st.composite
def images(draw):
    filt, band = draw(st.sampled_from(FILTER_PAIRS))
    offset_us = draw(st.sampled_from([0, 0, -1, 1, 500_000, 999_999]))
    time_us = (T0 + STEP * draw(st.integers(-7, 12))) * 1_000_000 + offset_us
    return dict(
        detector=draw(st.sampled_from([1, 1, 2, 3])),
        filter=filt,
        band=band,
        exposureTime=draw(st.sampled_from([30.0, 60.0, 180.0, 300.0, 450.0, 900.0, 1200.0, None])),
        time_us=time_us,
    )


def _reference(resolver, img, kind, mode):
    choice = resolver.choose(
        kind,
        Image(img["detector"], img["time_us"], img["filter"], img["band"], img["exposureTime"]),
        mode,
    )
    return None if choice is None else (choice.index, choice.rule, choice.scale)


@settings(max_examples=35, deadline=None, suppress_health_check=list(HealthCheck))
@given(records(), st.lists(images(), min_size=1, max_size=8))
def test_sql_macros_equal_the_reference(recs, imgs):
    from nightlake import Lake
    from nightlake.detrends.detreg import read_db
    from nightlake.detrends.sync import sync

    tmp = Path(tempfile.mkdtemp(prefix="nl-prop-"))
    try:
        db_path = write_detreg(tmp / "detrend.db", recs)
        rows = [
            dict(img, visit=i, obs_time=utc(0) + timedelta(microseconds=img["time_us"]))
            for i, img in enumerate(imgs)
        ]
        write_images(tmp / "lake", rows)
        lake = Lake(tmp / "lake")
        sync(lake, db_path)
        db = read_db(db_path)
        resolver = Resolver(db.records, db.filters)
        con = lake.connect()
        for kind in DETREND_TYPES:
            for mode in MODES:
                expected = {i: _reference(resolver, img, kind, mode) for i, img in enumerate(imgs)}
                batch = con.sql(
                    "SELECT visit, detrend_index, detrend_rule, detrend_scale "
                    "FROM resolve_detrends($t, mode := $m)",
                    params={"t": kind, "m": mode},
                ).fetchall()
                got = {v: (None if i is None else (i, r, s)) for v, i, r, s in batch}
                assert got == expected, (kind, mode, "resolve_detrends")
                single = con.sql(
                    "SELECT visit, d.record_index, d.rule, d.scale FROM (SELECT visit, detrend_for("
                    "$t, detector, filter, obs_time, mode := $m, exptime := exposureTime, "
                    "band := band) AS d FROM images)",
                    params={"t": kind, "m": mode},
                ).fetchall()
                got = {v: (None if i is None else (i, r, s)) for v, i, r, s in single}
                assert got == expected, (kind, mode, "detrend_for")
        con.close()
        _detsearch_equals_the_reference(tmp, db_path, db, resolver, imgs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_fits(path, img):
    from astropy.io import fits

    header = fits.Header()
    header["CCDNUM"] = img["detector"]
    if img["filter"] is not None:
        header["FILTER"] = img["filter"]
    if img["exposureTime"] is not None:
        header["EXPTIME"] = img["exposureTime"]
    moment = datetime(1970, 1, 1) + timedelta(microseconds=img["time_us"])
    header["DATE-OBS"] = moment.isoformat(timespec="microseconds")
    fits.PrimaryHDU(header=header).writeto(path)


def _detsearch_equals_the_reference(tmp, db_path, db, resolver, imgs):
    """detsearch (FITS headers → library → printed lines) names the reference's filename."""
    import io

    from nightlake.cli.detsearch import run
    from nightlake.detrends.search import record

    paths = []
    for i, img in enumerate(imgs):
        paths.append(tmp / f"img{i}.fits")
        _write_fits(paths[-1], img)
    for kind in DETREND_TYPES:
        usable = [
            i
            for i, img in enumerate(imgs)
            if not (kind in ("flat", "fringe") and img["filter"] is None)
            and not (kind == "dark" and img["exposureTime"] is None)
        ]
        if not usable:
            continue
        for mode in MODES:
            out, err = io.StringIO(), io.StringIO()
            argv = ["--db", str(db_path), "--type", kind, "--mode", mode, "--image"]
            argv += [str(paths[i]) for i in usable] + (
                ["--image", str(paths[usable[0]])] if len(usable) == 1 else []
            )
            status = run(argv, out=out, err=err)
            lines = dict(line.split("\t") for line in out.getvalue().splitlines())
            expected = {}
            for i in usable:
                ref = _reference(resolver, imgs[i], kind, mode)
                expected[str(paths[i])] = "" if ref is None else record(db, ref[0]).filename
            assert lines == expected, (kind, mode, "detsearch")
            assert status == (1 if "" in expected.values() else 0)


def test_detsearch_console_script_equals_the_reference(tmp_path):
    """A few real ``detsearch`` processes on a seeded random database and batch of images."""
    import random
    import subprocess
    import sys

    from nightlake.detrends.detreg import read_db
    from nightlake.detrends.search import record

    rnd = random.Random(5)
    recs = []
    kinds = ["flat", "dark", "bias"]
    for i in range(40):
        kind = kinds[i % 3]
        start = T0 + STEP * rnd.randint(-6, 6)
        length = rnd.choice([None, 1, 2, 3, 5, 8])
        recs.append(
            dict(
                type={"flat": 3, "dark": 2, "bias": 1}[kind],
                ccd=rnd.randint(1, 2),
                filter=(
                    rnd.choice([1, 2, 3])
                    if kind == "flat"
                    else rnd.choice([60, 300, 600])
                    if kind == "dark"
                    else -1
                ),
                tstart=start,
                tstop=OPEN if length is None else start + STEP * length,
                treg=rnd.randint(1, 2),
                filename=f"/masters/{kind}{i}.fits",
            )
        )
    db_path = write_detreg(tmp_path / "detrend.db", recs)
    imgs = [
        dict(
            detector=rnd.randint(1, 2),
            filter=VR if i % 2 else FILTERS[3],
            band="VR" if i % 2 else "g",
            exposureTime=rnd.choice([30.0, 180.0, 450.0]),
            time_us=(T0 + STEP * rnd.randint(-7, 12)) * 1_000_000 + rnd.choice([0, -1, 1]),
        )
        for i in range(12)
    ]
    paths = []
    for i, img in enumerate(imgs):
        paths.append(tmp_path / f"img{i}.fits")
        _write_fits(paths[-1], img)
    db = read_db(db_path)
    resolver = Resolver(db.records, db.filters)
    script = Path(sys.executable).parent / "detsearch"
    for kind in kinds:
        for mode in MODES:
            done = subprocess.run(
                [
                    str(script),
                    "-db",
                    str(db_path),
                    "-type",
                    kind,
                    "-mode",
                    mode,
                    "-image",
                    *map(str, paths),
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            got = dict(line.split("\t") for line in done.stdout.splitlines())
            expected = {}
            for path, img in zip(paths, imgs):
                ref = _reference(resolver, img, kind, mode)
                expected[str(path)] = "" if ref is None else record(db, ref[0]).filename
            assert got == expected, (kind, mode)
            assert done.returncode == (1 if "" in expected.values() else 0)
