"""nightlake audit: a hand-made database per finding kind; shadowed and coverage vs brute force."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from nightlake.detrends.rules import DETREND_TYPES, MODES, Image, Resolver

from .conftest import T0, VR, record, utc, write_detreg, write_images
from .test_properties import records

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
    from nightlake.detrends.sync import sync
    from nightlake.lake import Lake

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
