"""Which images change detrend: the diff of two database states over the lake (changes.py),
``detregister add/delete --preview`` and ``nightlake resolve --changed-since/--diff``.

The expectation is the Python reference of the rules (rules.py) run on every image against the
records before and after the change, image by image.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import read_table

from nightlake import Lake
from nightlake.detrends.changes import diff_states, summary
from nightlake.detrends.detreg import read_db
from nightlake.detrends.rules import DETREND_TYPES, MODES, Image, Resolver

from ..detreg.conftest import write_master
from ..detreg.test_as_of_lake import flat
from ..detreg.test_as_of_lake import write_images as write_lake
from .conftest import utc, write_detreg, write_images
from .test_properties import images, record

BIN = Path(sys.executable).parent


def _answer(db, resolver, img, kind, mode):
    """The reference's answer as what an image is given: filename, validity, treg, rule, scale."""
    choice = resolver.choose(
        kind,
        Image(img["detector"], img["time_us"], img["filter"], img["band"], img["exposureTime"]),
        mode,
    )
    if choice is None:
        return None
    rec = db.records[choice.index]
    name = bytes(rec["filename"]).decode()
    return (
        name,
        int(rec["tstart"]),
        int(rec["tstop"]),
        int(rec["treg"]),
        choice.rule,
        choice.scale,
    )


def expected_changes(before, after, imgs) -> set:
    """(type, mode, visit, old filename, new filename, old rule, new rule) of every image whose
    reference answer differs between the two databases."""
    old, new = Resolver(before.records, before.filters), Resolver(after.records, after.filters)
    out = set()
    for kind in DETREND_TYPES:
        for mode in MODES:
            for visit, img in enumerate(imgs):
                a = _answer(before, old, img, kind, mode)
                b = _answer(after, new, img, kind, mode)
                if a != b:
                    out.add(
                        (
                            kind,
                            mode,
                            visit,
                            a and a[0],
                            b and b[0],
                            a and a[4],
                            b and b[4],
                        )
                    )
    return out


def listed(table) -> set:
    return {
        (
            r["type"],
            r["mode"],
            r["visit"],
            r["old_filename"],
            r["new_filename"],
            r["old_rule"],
            r["new_rule"],
        )
        for r in table.to_pylist()
    }


@st.composite
def change(draw):
    """A database, a change to it (records added, or records deleted) and lake images."""
    focus = draw(st.sampled_from(DETREND_TYPES))
    recs = draw(st.lists(record(focus), max_size=12))
    if recs and draw(st.booleans()):
        gone = set(draw(st.lists(st.integers(0, len(recs) - 1), min_size=1, max_size=3)))
        after = [r for i, r in enumerate(recs) if i not in gone]
    else:
        after = recs + draw(st.lists(record(focus), min_size=1, max_size=3))
    imgs = draw(st.lists(images(), min_size=1, max_size=10))
    return recs, after, imgs


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(change())
def test_the_diff_equals_the_reference_before_and_after(case):
    recs, after_recs, imgs = case
    tmp = Path(tempfile.mkdtemp(prefix="nl-changes-"))
    try:
        before = read_db(write_detreg(tmp / "before.db", recs))
        after = read_db(write_detreg(tmp / "after.db", after_recs))
        rows = [
            dict(img, visit=i, obs_time=utc(0) + timedelta(microseconds=img["time_us"]))
            for i, img in enumerate(imgs)
        ]
        write_images(tmp / "lake", rows)
        table = diff_states(Lake(tmp / "lake"), before, after)
        assert listed(table) == expected_changes(before, after, imgs)
        assert table.num_rows == len(listed(table))  # one row per (type, mode, image)
        counts = summary(table)
        assert sum(counts.column("images").to_pylist()) == table.num_rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The commands, on a journaled database and a small lake

DAY = 86400
T0 = 1554076800  # 2019-04-01


def _flat_master(path: Path, ccd: int, filt: str, start_day: int, days: int) -> Path:
    iso = lambda d: utc(T0 + d * DAY).isoformat()  # noqa: E731
    return write_master(
        path,
        IMAGETYP="flat",
        FILTER=filt,
        CCDNUM=ccd,
        TV_START=iso(start_day),
        TV_STOP=iso(start_day + days),
    )


@pytest.fixture
def journaled(tmp_path):
    """A lake of 5 nights × CCDs 1, 2 × filters g, r, and a journaled database of flats."""
    from nightlake.detrends.detreg import init_db, register

    write_lake(tmp_path / "lake")
    db = tmp_path / "d.db"
    init_db(db)
    register(db, [flat(1, "g", 0, 2, 0, "g1a"), flat(2, "g", 0, 5, 0, "g2a")])
    register(db, [flat(1, "g", 1, 3, 1, "g1b"), flat(1, "r", 0, 5, 1, "r1")])
    return tmp_path


def _run(*args, cwd=None):
    return subprocess.run(
        [str(BIN / "nightlake"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def _state(root: Path, outputs=("preview.json", "gone.parquet")) -> dict:
    """Every file under ``root`` but the outputs, with its SHA-256 and mtime (lock files
    included: a lock file appearing is a change)."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in outputs
    }


def test_preview_add_changes_nothing_and_equals_the_add_done(journaled):
    root = journaled
    master = _flat_master(root / "r2.fits", 2, "r", 1, 2)
    seen = _state(root)
    out = root / "preview.json"
    done = _run(
        "detregister",
        "add",
        "--db",
        root / "d.db",
        "--preview",
        "--lake",
        root / "lake",
        master,
        "--format",
        "json",
        "-o",
        out,
    )
    assert done.returncode == 0, done.stderr
    assert _state(root) == seen  # database, journal, lock file and lake untouched
    preview = json.loads(out.read_text())
    # night 2 and 3 (exact and recent) and nights 4, 5 (recent: the ended flat) of CCD 2 in r
    assert {(r["mode"], r["night"], r["detector"], r["new_filename"]) for r in preview} == {
        ("exact", "20190402", 2, str(master)),
        ("exact", "20190403", 2, str(master)),
        ("recent", "20190402", 2, str(master)),
        ("recent", "20190403", 2, str(master)),
        ("recent", "20190404", 2, str(master)),
        ("recent", "20190405", 2, str(master)),
    }
    assert all(r["old_filename"] is None for r in preview)

    from nightlake.detrends.detreg import read_journal
    from nightlake.detrends.history import parse_as_of

    since = parse_as_of(read_journal(root / "d.db")[-1]["time"])
    added = _run("detregister", "add", "--db", root / "d.db", master)
    assert added.returncode == 0, added.stderr
    after = _run(
        "resolve",
        "--lake",
        root / "lake",
        "--db",
        root / "d.db",
        "--changed-since",
        since.isoformat(),
        "--format",
        "json",
    )
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout) == preview


def test_preview_delete_table_and_parquet(journaled):
    root = journaled
    seen = _state(root)
    done = _run(
        "detregister",
        "delete",
        "--db",
        root / "d.db",
        "--type",
        "flat",
        "--ccd",
        1,
        "--filter",
        "g",
        "--preview",
        "--lake",
        root / "lake",
        "--mode",
        "exact",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    rows = read_table("\n".join(lines[:-1]))
    assert list(rows[0]) == [
        "night",
        "detector",
        "type",
        "mode",
        "old_filename",
        "new_filename",
        "images",
    ]
    assert list(rows[0].values()) == [
        "20190401",
        "1",
        "flat",
        "exact",
        "/m/g1a.fits",
        "(none)",
        "1",
    ]
    assert lines[-1] == ("4 image detrend(s) would change (now → with the delete of 2 record(s))")
    parquet = root / "gone.parquet"
    done = _run(
        "detregister",
        "delete",
        "--db",
        root / "d.db",
        "--type",
        "flat",
        "--ccd",
        1,
        "--preview",
        "--lake",
        root / "lake",
        "--format",
        "parquet",
        "-o",
        parquet,
    )
    assert done.returncode == 0, done.stderr
    table = pq.read_table(parquet)
    info = json.loads(table.schema.metadata[b"nightlake.changes"])
    assert info["before"]["journal"]["entries"] == 3
    assert info["before"]["sha256"] == hashlib.sha256((root / "d.db").read_bytes()).hexdigest()
    assert info["lake"]["files"] == 5
    # the states have the shape of every provenance's database (nightlake.resolve, detsearch)
    from nightlake.detrends.provenance import PROVENANCE_VERSION

    assert info["provenance_version"] == PROVENANCE_VERSION and info["nightlake_version"]
    assert set(info["before"]) == {"label", "path", "sha256", "journal"} == set(info["after"])
    assert info["before"]["path"] == info["after"]["path"] == str((root / "d.db").resolve())
    assert info["after"]["sha256"] is None and info["after"]["journal"] is None
    assert set(table.column("old_filename").to_pylist()) == {
        "/m/g1a.fits",
        "/m/g1b.fits",
        "/m/r1.fits",
    }
    assert _state(root) == seen


def test_diff_between_two_times(journaled):
    from nightlake.detrends.changes import changes_between
    from nightlake.detrends.detreg import read_journal
    from nightlake.detrends.history import parse_as_of, replay

    root = journaled
    times = [parse_as_of(e["time"]) for e in read_journal(root / "d.db")]
    lake = Lake(root / "lake")
    table = changes_between(lake, root / "d.db", times[0], times[1])
    imgs = _lake_images(lake)
    before, after = replay(root / "d.db", times[0]).db, replay(root / "d.db", times[1]).db
    assert listed(table) == expected_changes(before, after, imgs)
    # g: exact CCD 1 nights 1-2 and CCD 2 nights 1-5; recent both CCDs every night
    assert table.num_rows == 17
    done = _run(
        "resolve",
        "--lake",
        root / "lake",
        "--db",
        root / "d.db",
        "--diff",
        times[0].isoformat(),
        times[1].isoformat(),
        "--type",
        "flat",
        "--mode",
        "recent",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("10 image detrend(s) changed (as of ")
    same = changes_between(lake, root / "d.db", times[2], None)
    assert same.num_rows == 0 and "old_filename" in same.column_names


def _lake_images(lake: Lake) -> list[dict]:
    """The lake's images as the reference reads them, listed by visit (visits are 0..n-1 here
    only after renumbering: the diff's rows name the lake's own visits)."""
    rows = lake.sql(
        "SELECT visit, detector, filter, band, exposureTime, epoch_us(obs_time) AS t "
        "FROM images ORDER BY visit"
    ).to_pylist()
    out: list[dict] = []
    for r in rows:
        while len(out) < r["visit"]:
            out.append(dict(detector=None, filter=None, band=None, exposureTime=None, time_us=None))
        out.append(
            dict(
                detector=r["detector"],
                filter=r["filter"],
                band=r["band"],
                exposureTime=r["exposureTime"],
                time_us=r["t"],
            )
        )
    return out


@pytest.mark.parametrize(
    "args, message",
    [
        (
            [
                "detregister",
                "add",
                "--db",
                "{db}",
                "--preview",
                "--lake",
                "{lake}",
                "{root}/nope.fits",
            ],
            "nope.fits: no such file",
        ),
        (
            ["detregister", "add", "--db", "{db}", "--preview", "{root}/r2.fits"],
            "--preview resolves the images of a lake: give --lake LAKE",
        ),
        (
            ["detregister", "delete", "--db", "{db}", "--type", "flat", "--lake", "{lake}"],
            "--lake, --mode, --format and -o go with --preview",
        ),
        (
            [
                "detregister",
                "delete",
                "--db",
                "{db}",
                "--preview",
                "--lake",
                "{root}/nolake",
                "--type",
                "flat",
            ],
            "no lake images here",
        ),
        (
            [
                "detregister",
                "delete",
                "--db",
                "{db}",
                "--preview",
                "--lake",
                "{lake}",
                "--type",
                "flat",
                "--format",
                "parquet",
            ],
            "--format parquet needs -o FILE",
        ),
        (
            ["detregister", "delete", "--db", "{db}", "--preview", "--lake", "{lake}"],
            "refusing to delete every record",
        ),
        (
            [
                "resolve",
                "--lake",
                "{lake}",
                "--db",
                "{db}",
                "--diff",
                "2026-12-01T12:00",
                "2026-12-01T11:00",
            ],
            "the second time is before the first",
        ),
        (
            ["resolve", "--lake", "{lake}", "--db", "{db}", "--changed-since", "2001-01-01"],
            "the earliest reproducible time is",
        ),
        (
            ["resolve", "--lake", "{lake}", "--db", "{db}", "--changed-since", "yesterday"],
            "--as-of 'yesterday': not a time",
        ),
        (
            [
                "resolve",
                "--lake",
                "{lake}",
                "--changed-since",
                "2001-01-01",
                "--as-of",
                "2001-01-01",
            ],
            "take neither --as-of",
        ),
    ],
)
def test_bad_input_is_one_line(journaled, args, message):
    root = journaled
    _flat_master(root / "r2.fits", 2, "r", 1, 2)
    seen = _state(root)
    fill = {"db": root / "d.db", "lake": root / "lake", "root": root}
    done = _run(*[a.format(**fill) for a in args])
    assert done.returncode != 0
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert message in done.stderr
    assert _state(root) == seen


def test_preview_of_an_add_a_forbidding_database_refuses(tmp_path):
    from nightlake.detrends.detreg import init_db, register

    write_lake(tmp_path / "lake")
    init_db(tmp_path / "d.db", forbid_overlaps=True)
    register(tmp_path / "d.db", [flat(2, "r", 0, 3, 0, "r2")])
    master = _flat_master(tmp_path / "r2b.fits", 2, "r", 2, 2)
    done = _run(
        "detregister",
        "add",
        "--db",
        tmp_path / "d.db",
        "--preview",
        "--lake",
        tmp_path / "lake",
        master,
    )
    assert done.returncode != 0
    assert "this database forbids overlaps" in done.stderr
    assert len(done.stderr.splitlines()) == 1
