"""``--as-of`` on the lake's commands (resolve, explain, audit) and the SQL relation
``detrends_as_of``: each answers as a lake synced from a copy of the database saved then."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nightlake import Lake
from nightlake.detrends.detreg import (
    DetRegEntry,
    Selection,
    delete_records,
    init_db,
    read_journal,
    register,
)
from nightlake.detrends.history import AS_OF_TABLE, parse_as_of, register_as_of
from nightlake.detrends.rules import write_assignments
from nightlake.detrends.sync import sync

BIN = Path(sys.executable).parent
DAY = 86400
T0 = 1554076800  # 2019-04-01


def flat(ccd: int, filt: str, start: int, days: int, treg: int, name: str) -> DetRegEntry:
    return DetRegEntry(
        filename=f"/m/{name}.fits",
        type="flat",
        filter=filt,
        ccd=ccd,
        tstart=T0 + start * DAY,
        tstop=T0 + (start + days) * DAY,
        treg=T0 + treg * DAY,
    )


def write_images(lake: Path) -> None:
    """Images of CCDs 1 and 2 in g and r, one a day for five days."""
    rows = [
        (100 * day + ccd * 10 + i, ccd, f, day)
        for day in range(5)
        for ccd in (1, 2)
        for i, f in enumerate("gr")
    ]
    for day in range(5):
        part = [r for r in rows if r[3] == day]
        night = f"2019040{day + 1}"
        out = lake / "images" / "target=A" / f"night={night}" / f"{night}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {
                "visit": pa.array([r[0] for r in part], pa.int64()),
                "detector": pa.array([r[1] for r in part], pa.int64()),
                "filter": pa.array([r[2] for r in part], pa.string()),
                "band": pa.array([r[2] for r in part], pa.string()),
                "exposureTime": pa.array([30.0] * len(part), pa.float64()),
                "obs_time": pa.array(
                    [datetime(2019, 4, 1 + day, 5) for _ in part], pa.timestamp("us")
                ),
            }
        )
        pq.write_table(table, out)


def last_time(db: Path) -> datetime:
    return parse_as_of(read_journal(db)[-1]["time"])


@pytest.fixture(scope="module")
def history_lake(tmp_path_factory):
    """A database changed four times (a copy saved after each) and a lake tied to it."""
    tmp = tmp_path_factory.mktemp("asof_lake")
    db = tmp / "d.db"
    init_db(db)
    changes = [
        lambda: register(db, [flat(1, "g", 0, 3, 0, "a"), flat(2, "r", 0, 5, 0, "b")]),
        lambda: register(db, [flat(1, "g", 1, 4, 2, "c"), flat(1, "r", 0, 5, 0, "d")]),
        lambda: delete_records(db, Selection(type="flat", ccd=2)),
        lambda: register(db, [flat(2, "g", 0, 5, 3, "e")]),
    ]
    saved = []
    for n, change in enumerate(changes):
        change()
        copy = tmp / f"copy{n}.db"
        shutil.copy(db, copy)
        saved.append((last_time(db), copy))
    lake = tmp / "lake"
    write_images(lake)
    sync(Lake(lake), db)
    return db, lake, saved, tmp


def copy_lake(tmp: Path, lake: Path, copy: Path) -> Path:
    """A lake with the same images, synced from the saved copy of the database."""
    other = tmp / f"lake_{copy.stem}"
    if not other.exists():
        shutil.copytree(lake / "images", other / "images")
        shutil.copy(lake / "nightlake.json", other / "nightlake.json")
        sync(Lake(other), copy)
    return other


def rows(path: Path) -> list[dict]:
    """The rows in (visit, detector) order: resolve_detrends promises no order."""
    return sorted(pq.read_table(path).to_pylist(), key=lambda r: (r["visit"], r["detector"]))


@pytest.mark.parametrize("mode", ["exact", "recent"])
def test_resolve_as_of_equals_resolve_on_the_saved_copy(history_lake, tmp_path, mode):
    db, lake, saved, tmp = history_lake
    for k, (when, copy) in enumerate(saved):
        then = copy_lake(tmp, lake, copy)
        later = saved[k + 1][0] if k + 1 < len(saved) else when.replace(year=when.year + 1)
        want = tmp_path / f"want{k}.parquet"
        write_assignments(Lake(then), "flat", mode, want)
        for moment in (when, when + (later - when) / 2):
            got = tmp_path / f"got{k}.parquet"
            write_assignments(Lake(lake), "flat", mode, got, as_of=moment)
            assert rows(got) == rows(want), (k, moment)
    # and the answers did change over time (the test would not see a replay that ignores T)
    first, last = (tmp_path / "got0.parquet", tmp_path / f"got{len(saved) - 1}.parquet")
    assert rows(first) != rows(last)


def test_sql_relation_detrends_as_of(history_lake):
    db, lake, saved, tmp = history_lake
    con = Lake(lake).connect()
    register_as_of(con, db, saved[0][0])
    names = con.sql(f"SELECT filename FROM {AS_OF_TABLE} ORDER BY record_index").fetchall()
    assert names == [("/m/a.fits",), ("/m/b.fits",)]
    chosen = con.sql(
        "SELECT count(detrend_index) FROM resolve_detrends('flat', "
        f"detrend_source := '{AS_OF_TABLE}')"
    ).fetchall()[0][0]
    assert chosen == 3 + 5  # a: ccd 1 g on days 0-2; b: ccd 2 r on days 0-4


def test_cli_resolve_explain_audit_as_of(history_lake, tmp_path):
    db, lake, saved, tmp = history_lake
    nl = str(BIN / "nightlake")
    first = saved[0][0].isoformat()
    out = tmp_path / "r.parquet"
    done = subprocess.run(
        [nl, "resolve", "--lake", lake, "--type", "flat", "-o", out, "--as-of", first],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert {r["detrend_filename"] for r in rows(out)} == {"/m/a.fits", "/m/b.fits", None}

    # explain a CCD 2 r image: b then (record 1), e's era has no r flat for CCD 2
    def explain(when: datetime) -> dict:
        done = subprocess.run(
            [nl, "explain", "--lake", lake, "--type", "flat", "--visit", "121", "--detector"]
            + ["2", "--format", "json", "--as-of", when.isoformat()],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert "/m/b.fits" in json.dumps(explain(saved[0][0]))
    assert "/m/b.fits" not in json.dumps(explain(saved[-1][0]))

    def audit(*args) -> list[dict]:
        done = subprocess.run(
            [nl, "audit", "--type", "flat", "--format", "json", "--fail-on", "shadowed", *args],
            capture_output=True,
            text=True,
        )
        assert done.returncode in (0, 1), done.stderr
        return json.loads(done.stdout)

    for when, copy in saved[:2]:
        assert audit("--lake", lake, "--as-of", when.isoformat()) == audit(
            "--lake", copy_lake(tmp, lake, copy)
        )


@pytest.mark.parametrize(
    "args, code",
    [
        (["resolve", "--type", "flat", "-o", "{tmp}/x.parquet", "--as-of", "2000-01-01"], 1),
        (["resolve", "--type", "flat", "-o", "{tmp}/x.parquet", "--as-of", "soon"], 2),
        (["resolve", "--type", "flat", "-o", "{tmp}/x.parquet", "--db", "{db}"], 2),
        (["audit", "--as-of", "1970-01-01T00:00:01Z"], 1),
        (["audit", "--as-of", "next tuesday"], 2),
        (["explain", "--type", "flat", "--visit", "121", "--detector", "2", "--as-of", "0"], 1),
    ],
)
def test_as_of_errors_are_one_line(history_lake, tmp_path, args, code):
    db, lake, saved, tmp = history_lake
    argv = [a.format(tmp=tmp_path, db=db) for a in args]
    done = subprocess.run(
        [str(BIN / "nightlake"), *argv, "--lake", str(lake)], capture_output=True, text=True
    )
    assert done.returncode == code, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "x.parquet").exists()


# --------------------------------------------------------------------------------------------
# provenance and nightlake verify


@pytest.fixture
def fresh(tmp_path):
    """A lake tied to a journaled database, and its flat resolution written by the CLI."""
    db = tmp_path / "d.db"
    init_db(db)
    register(db, [flat(1, "g", 0, 3, 0, "a"), flat(2, "r", 0, 5, 0, "b")])
    lake = tmp_path / "lake"
    write_images(lake)
    sync(Lake(lake), db)
    out = tmp_path / "flats.parquet"
    done = nightlake("resolve", "--lake", lake, "--type", "flat", "--mode", "recent", "-o", out)
    assert done.returncode == 0, done.stderr
    return db, lake, out


def nightlake(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "nightlake"), *map(str, args)], capture_output=True, text=True)


def test_resolve_records_its_provenance(fresh):
    db, lake, out = fresh
    meta = json.loads(pq.read_schema(out).metadata[b"nightlake.resolve"])
    assert (meta["type"], meta["mode"], meta["as_of"]) == ("flat", "recent", None)
    assert meta["db"]["path"] == str(db.resolve())
    assert meta["db"]["sha256"] == read_journal(db)[-1]["sha256"]
    assert meta["db"]["journal"]["entries"] == 2
    assert meta["lake"]["files"] == 5 and len(meta["lake"]["sha256"]) == 64
    assert meta["nightlake_version"]


def test_verify_passes_fresh_and_after_later_registrations(fresh):
    db, lake, out = fresh
    done = nightlake("verify", out)
    assert done.returncode == 0 and "verified" in done.stdout, done.stderr
    register(db, [flat(1, "g", 0, 5, 4, "later"), flat(1, "r", 0, 5, 4, "later_r")])
    sync(Lake(lake), db)
    done = nightlake("verify", out)
    assert done.returncode == 0, done.stdout + done.stderr


def test_verify_reports_a_hand_edited_row(fresh):
    db, lake, out = fresh
    table = pq.read_table(out)
    names = table.column("detrend_filename").to_pylist()
    k = names.index("/m/a.fits")
    names[k] = "/m/forged.fits"
    column = table.schema.get_field_index("detrend_filename")
    pq.write_table(table.set_column(column, "detrend_filename", pa.array(names)), out)
    done = nightlake("verify", out)
    assert done.returncode == 1
    differs = [line for line in done.stdout.splitlines() if line.startswith("differs")]
    assert len(differs) == 1 and "/m/forged.fits" in differs[0] and "/m/a.fits" in differs[0]
    visit = table.column("visit")[k].as_py()
    assert f"visit={visit}" in differs[0]
    assert "1 row(s) differ" in done.stderr


@pytest.mark.parametrize("gone", ["lake partition", "database", "journal rewritten"])
def test_verify_says_which_input_is_gone(fresh, gone):
    db, lake, out = fresh
    if gone == "lake partition":
        next((lake / "images").rglob("*.parquet")).unlink()
    elif gone == "database":
        db.unlink()
    else:
        path = Path(str(db) + ".journal")
        path.write_text(path.read_text().splitlines(keepends=True)[0])
    done = nightlake("verify", out)
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert str(out) in done.stderr


@pytest.mark.parametrize("content", [b"not parquet", None, "no provenance", "version 1"])
def test_verify_refuses_what_is_not_a_resolution(tmp_path, content):
    path = tmp_path / "x.parquet"
    if content == "no provenance":
        pq.write_table(pa.table({"a": [1]}), path)
    elif content == "version 1":  # what resolve wrote before provenance: the mirror only
        meta = {b"nightlake.resolve": json.dumps({"type": "flat", "mode": "exact"}).encode()}
        pq.write_table(pa.table({"a": [1]}).replace_schema_metadata(meta), path)
    elif content is not None:
        path.write_bytes(content)
    done = nightlake("verify", path)
    assert done.returncode == 1, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and str(path) in done.stderr
