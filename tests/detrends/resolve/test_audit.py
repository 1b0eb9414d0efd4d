"""nightlake audit: a hand-made database per finding kind; shadowed and coverage vs brute force."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nightlake.detrends.rules import DETREND_TYPES, MODES, Image, Resolver

from .conftest import T0, VR, record, utc, write_detreg, write_images
from .test_properties import images, records

RECS = [
    record("flat", 5, 1, -100, 100, 10, "a"),  # 0
    record("flat", 5, 1, -50, 50, 5, "shadowed"),  # 1: inside 0, registered earlier
    record("flat", 5, 1, 10, 10, 5, "empty"),  # 2
    record("bias", 5, -1, -100, None, 5, "open"),  # 3: open-ended bias
    record("mask", 5, -1, -100, None, 5, "mask"),  # 4: open-ended mask is fine
    record("bias", 6, -1, -100, 100, 5, "a"),  # 5: same filename as 0
    record("bias", 6, -1, -100, 100, 5, "a"),  # 6: identical to 5
]


def _lake(tmp_path, recs, imgs):
    from nightlake import Lake
    from nightlake.detrends.sync import sync

    db = write_detreg(tmp_path / "detrend.db", recs)
    write_images(tmp_path / "lake", imgs)
    sync(Lake(tmp_path / "lake"), db)
    return Lake(tmp_path / "lake")


IMGS = [
    dict(visit=1, detector=5, filter=VR, band="VR", exposureTime=60.0, obs_time=utc(T0)),
    dict(visit=2, detector=5, filter=VR, band="VR", exposureTime=60.0, obs_time=utc(T0 + 500)),
]


def test_each_finding_kind(tmp_path):
    from nightlake.detrends.audit import audit

    con = _lake(tmp_path, RECS, IMGS).connect()
    rows = audit(con, DETREND_TYPES, "recent").to_pylist()
    got = {
        (r["finding"], r["type"], r["record_index"]) for r in rows if r["record_index"] is not None
    }
    assert got == {
        ("empty range", "flat", 2),
        ("open-ended", "bias", 3),
        ("duplicate filename", "bias", 5),
        ("identical record", "bias", 6),
        ("shadowed", "flat", 1),
        ("shadowed", "bias", 5),  # 6 is identical and later in the file: 5 never wins
        ("overlap", "flat", 0),  # with 1
        ("overlap", "bias", 5),  # with 6
    }
    gaps = {(r["finding"], r["type"], r["images"]) for r in rows if r["record_index"] is None}
    assert ("recent fallback", "flat", 1) in gaps
    assert ("gap", "dark", 2) in gaps  # no dark at all
    exact = {(r["finding"], r["type"]) for r in audit(con, ["flat"], "exact").to_pylist()}
    assert ("gap", "flat") in exact


def test_audit_cli_exit_status_follows_fail_on(tmp_path):
    _lake(tmp_path, RECS, IMGS)
    script = Path(sys.executable).parent / "nightlake"
    base = [str(script), "audit", "--lake", str(tmp_path / "lake"), "--format", "json"]
    done = subprocess.run(base + ["--type", "flat"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and '"gap"' in done.stdout, done.stderr
    done = subprocess.run(
        base + ["--type", "flat", "--mode", "recent"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        base + ["--type", "flat", "--mode", "recent", "--fail-on", "shadowed"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    done = subprocess.run(base + ["--fail-on", "gaps"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 or done.returncode == 1
    assert done.stderr.count("\n") == 1 and "--fail-on 'gaps'" in done.stderr


def test_audit_db_answers_as_the_synced_mirror_does(tmp_path):
    """--db audits the file itself: a lake that never synced it gives the findings the lake's
    mirror gives once synced."""
    from nightlake.cli.app import app

    db = write_detreg(tmp_path / "detrend.db", RECS)
    write_images(tmp_path / "plain", IMGS)
    _lake(tmp_path, RECS, IMGS)
    runner = CliRunner()
    args = ["audit", "--format", "json", "--mode", "recent"]
    direct = runner.invoke(app, [*args, "--lake", str(tmp_path / "plain"), "--db", str(db)])
    mirrored = runner.invoke(app, [*args, "--lake", str(tmp_path / "lake")])
    assert direct.exit_code == mirrored.exit_code, direct.output
    assert json.loads(direct.stdout) == json.loads(mirrored.stdout)
    assert any(row["finding"] == "shadowed" for row in json.loads(direct.stdout))
    assert not (tmp_path / "plain" / "detrends").exists()  # nothing synced


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(records())
def test_shadowed_equals_a_brute_force_over_every_boundary(recs):
    import tempfile

    from nightlake.detrends.audit import shadowed
    from nightlake.detrends.detreg import read_db
    from nightlake.detrends.explain import db_connection

    with tempfile.TemporaryDirectory() as tmp:
        db = read_db(write_detreg(Path(tmp) / "d.db", recs))
    con = db_connection(db)
    resolver = Resolver(db.records, db.filters)
    for code, kind in enumerate(DETREND_TYPES, start=1):
        winners = set()
        mine = [x for x in db.records if int(x["type"]) == code and x["tstop"] > x["tstart"]]
        for x in mine:
            name = db.filters.get(int(x["filter"]), "")
            for b in {int(y["tstart"]) for y in mine} | {int(y["tstop"]) for y in mine}:
                if b >= 2**63 // 1_000_000:
                    continue
                img = Image(int(x["ccd"]), b * 1_000_000, name, name, float(x["filter"]))
                for mode in MODES:
                    choice = resolver.choose(kind, img, mode)
                    if choice is not None:
                        winners.add(choice.index)
        expected = {
            i
            for i, x in enumerate(db.records)
            if int(x["type"]) == code and x["tstop"] > x["tstart"] and i not in winners
        }
        got = set(shadowed(con, kind).column("record_index").to_pylist())
        assert got == expected, kind


def test_overlaps_name_the_winner_of_each_overlapped_span(tmp_path):
    from nightlake.detrends.audit import audit

    recs = [
        record("flat", 5, 1, 0, 300, 5, "long"),  # 0
        record("flat", 5, 1, 100, 200, 9, "newer"),  # 1: inside 0, registered later: wins
        record("flat", 5, 1, 250, 400, 1, "older"),  # 2: overlaps the end of 0, loses there
        record("flat", 5, 3, 0, 300, 5, "g"),  # another filter: no overlap with 0
        record("flat", 6, 1, 0, 300, 5, "ccd6"),  # another CCD: no overlap with 0
        record("dark", 5, 60, 0, 300, 5, "d60"),  # 5
        record("dark", 5, 300, 0, 300, 5, "d300"),  # another exposure time: no overlap
        record("dark", 5, 60, 300, 600, 5, "d60b"),  # touches 5 at 300: no overlap
    ]
    con = _lake(tmp_path, recs, IMGS).connect()
    rows = [r for r in audit(con, ["flat", "dark"], images=False).to_pylist()]
    got = {
        (r["record_index"], r["other_index"]): r["detail"]
        for r in rows
        if r["finding"] == "overlap"
    }
    assert set(got) == {(0, 1), (0, 2)}
    assert got[(0, 1)].endswith("winner there: record 1")
    assert "from 2019-04-02T05:14:40 to 2019-04-02T05:16:20" in got[(0, 1)]
    assert got[(0, 2)].endswith("winner there: record 0")


def _crossing_images(draw_images):
    return [
        dict(img, visit=i, obs_time=utc(0) + timedelta(microseconds=img["time_us"]))
        for i, img in enumerate(draw_images)
    ]


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(records(), st.lists(images(), min_size=1, max_size=8))
def test_boundary_crossings_equal_a_brute_force_over_every_second_of_each_exposure(recs, imgs):
    from nightlake.detrends.audit import crossings
    from nightlake.detrends.detreg import read_db

    tmp = Path(tempfile.mkdtemp(prefix="nl-cross-"))
    try:
        db = read_db(write_detreg(tmp / "d.db", recs))
        rows = _crossing_images(imgs)
        lake = _lake(tmp, recs, rows)
        con = lake.connect()
        resolver = Resolver(db.records, db.filters)
        kinds = {DETREND_TYPES[int(r["type"]) - 1] for r in db.records} or {"flat"}
        for kind in kinds:
            for mode in MODES:
                expected = set()
                for row in rows:
                    if not row["exposureTime"]:
                        continue
                    # records change only at whole seconds: one probe per second of the exposure
                    first = row["time_us"] // 1_000_000
                    last = (row["time_us"] + int(row["exposureTime"] * 1e6) - 1) // 1_000_000
                    winners = set()
                    for second in range(first, last + 1):
                        t = max(row["time_us"], second * 1_000_000)
                        img = Image(
                            row["detector"], t, row["filter"], row["band"], row["exposureTime"]
                        )
                        choice = resolver.choose(kind, img, mode)
                        winners.add(None if choice is None else choice.index)
                    if len(winners) > 1:
                        expected.add(row["visit"])
                found = crossings(con, kind, mode).to_pylist()
                got = {int(r["detail"].split(":")[0].split()[1]) for r in found}
                assert got == expected, (kind, mode)
        con.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(records(), st.lists(images(), min_size=1, max_size=8))
def test_coverage_counts_equal_counts_from_resolve_detrends(recs, imgs):
    tmp = Path(tempfile.mkdtemp(prefix="nl-cov-"))
    try:
        rows = _crossing_images(imgs)
        for i, row in enumerate(rows):
            row["night"] = f"2019040{i % 3 + 1}"
        con = _lake(tmp, recs, rows).connect()
        for kind in DETREND_TYPES:
            for mode in MODES:
                resolved = con.sql(
                    "SELECT night, detector, filter, band, exposureTime, detrend_rule "
                    "FROM resolve_detrends($t, mode := $m)",
                    params={"t": kind, "m": mode},
                ).fetchall()
                expected = Counter()
                for night, ccd, filt, band, exptime, rule in resolved:
                    if kind in ("flat", "fringe"):
                        cls = band if band is not None else filt
                    elif kind == "dark":
                        cls = None if exptime is None else f"{exptime} s"
                    else:
                        cls = "any"
                    key = (night, ccd, cls)
                    expected[key + ("images",)] += 1
                    expected[key + (rule or "none",)] += 1
                got = Counter()
                for night, ccd, cls, n, exact, recent, none in con.sql(
                    "SELECT night, ccd, filter_class, images, exact, recent, none "
                    "FROM coverage($t, mode := $m)",
                    params={"t": kind, "m": mode},
                ).fetchall():
                    for name, count in (
                        ("images", n),
                        ("exact", exact),
                        ("recent", recent),
                        ("none", none),
                    ):
                        if count:
                            got[(night, ccd, cls, name)] += count
                assert got == expected, (kind, mode)
        con.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_check_files_reports_missing_and_unreadable_files_by_their_exact_bytes(tmp_path):
    from nightlake.detrends.audit import audit

    here = tmp_path / "masters"
    here.mkdir()
    latin1 = os.fsencode(here) + b"/caf\xe9.fits"  # not UTF-8: only the bytes name the file
    with open(latin1, "wb") as f:
        f.write(b"SIMPLE")
    (here / "dir.fits").mkdir()  # exists, but cannot be read as a file
    recs = [
        dict(record("bias", 5, -1, 0, 100, 5, "x"), filename=latin1),  # 0: fine
        dict(record("bias", 5, -1, 100, 200, 5, "x"), filename=latin1[:-6] + b"\xe8.fits"),  # 1
        dict(record("bias", 5, -1, 200, 300, 5, "x"), filename=str(here / "dir.fits")),  # 2
        dict(record("bias", 5, -1, 300, 400, 5, "x"), filename=str(here / "gone.fits")),  # 3
    ]
    con = _lake(tmp_path, recs, IMGS).connect()
    rows = audit(con, ["bias"], images=False, check_files=True).to_pylist()
    got = {r["record_index"]: (r["finding"], r["detail"]) for r in rows if "file" in r["finding"]}
    assert set(got) == {1, 2, 3}
    assert got[1][0] == "missing file" and "caf\\xe8.fits: no such file" in got[1][1]
    assert got[2][0] == "unreadable file" and "dir.fits" in got[2][1]
    assert got[3][0] == "missing file"
    assert not any("file" in r["finding"] for r in audit(con, ["bias"], images=False).to_pylist())
    script = Path(sys.executable).parent / "nightlake"
    done = subprocess.run(
        [str(script), "audit", "--lake", str(tmp_path / "lake"), "--type", "bias"]
        + ["--check-files", "--fail-on", "missing file", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "gone.fits" in done.stdout, done.stderr


def test_plot_writes_the_coverage_png_and_is_refused_inside_the_lake(tmp_path):
    _lake(tmp_path, RECS + [record("flat", 5, 1, 40, 300, 11, "over")], IMGS)
    script = Path(sys.executable).parent / "nightlake"
    base = [str(script), "audit", "--lake", str(tmp_path / "lake"), "--type", "flat"]
    for extra, png in (([], "all.png"), (["--ccd", "5", "--type", "bias"], "ccd5.png")):
        out = tmp_path / png
        done = subprocess.run(
            base + extra + ["--plot", str(out), "-o", str(tmp_path / "f.json")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1, done.stderr  # a gap: the exit status is the audit's
        data = out.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    inside = tmp_path / "lake" / "images" / "cov.png"
    done = subprocess.run(base + ["--plot", str(inside)], capture_output=True, text=True)
    assert done.returncode != 0 and done.stderr.count("\n") == 1 and "lake" in done.stderr
    assert not inside.exists()
    done = subprocess.run(base + ["--ccd", "5"], capture_output=True, text=True)
    assert done.returncode == 2 and "--plot" in done.stderr and done.stderr.count("\n") == 1


def test_records_and_images_of_one_class_share_a_row_of_the_coverage_picture(tmp_path):
    """The picture's class labels are detrend_class's, for records and images alike: a lake
    whose exposureTime is an integer used to label its images '60 s' and the dark '60.0 s'."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from nightlake.detrends.coverage_plot import _classes, _panel_data

    lake = _lake(tmp_path, [record("dark", 5, 60, -100, 100, 5, "d60")], IMGS)
    for part in lake.image_files():
        table = pq.read_table(part)
        i = table.schema.get_field_index("exposureTime")
        table = table.set_column(i, "exposureTime", pc.cast(table["exposureTime"], "int64"))
        pq.write_table(table, part)
    con = lake.connect()
    records, _segments, nights = _panel_data(con, "dark", "exact", None)
    assert _classes("dark", records, nights) == ["60.0 s"]
    coverage = con.sql("SELECT DISTINCT filter_class FROM coverage('dark')").fetchall()
    assert coverage == [("60.0 s",)]
    con.close()
