"""Provenance beyond ``nightlake resolve``: ``detsearch --format json`` answers and ``nightlake
export`` of a query that reads the detrend mirror. Each recorded value is checked against the
files themselves (SHA-256 of the database bytes, count and SHA-256 of the journal's lines)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nightlake import Lake, __version__
from nightlake.cli.detsearch import run
from nightlake.detrends.detreg import init_db, read_journal, register
from nightlake.detrends.sync import sync
from nightlake.query.export import export

from ..detreg.conftest import write_master
from ..detreg.test_as_of_lake import flat
from ..detreg.test_as_of_lake import write_images as write_lake


@pytest.fixture
def journaled(tmp_path):
    write_lake(tmp_path / "lake")
    db = tmp_path / "d.db"
    init_db(db)
    register(db, [flat(1, "g", 0, 2, 0, "g1a")])
    register(db, [flat(1, "g", 1, 3, 1, "g1b")])
    sync(Lake(tmp_path / "lake"), db)
    return tmp_path


def journal_lines(db: Path) -> list[bytes]:
    return (db.parent / f"{db.name}.journal").read_bytes().splitlines(keepends=True)


def expected_db(db: Path, lines: list[bytes], content: bytes) -> dict:
    return {
        "path": str(db.resolve()),
        "sha256": hashlib.sha256(content).hexdigest(),
        "journal": {
            "entries": len(lines),
            "last_entry_sha256": hashlib.sha256(lines[-1]).hexdigest(),
            "time": json.loads(lines[-1])["time"],
        },
    }


def test_detsearch_json_records_where_the_answer_came_from(journaled):
    db = journaled / "d.db"
    image = write_master(
        journaled / "img.fits", FILTER="g", CCDNUM=1, **{"DATE-OBS": "2019-04-02T05:00:00"}
    )
    lines, content = journal_lines(db), db.read_bytes()
    out = io.StringIO()
    argv = ["--db", str(db), "--image", str(image), "--type", "flat", "--format", "json"]
    assert run(argv, out=out) == 0
    answer = json.loads(out.getvalue())
    assert answer["record"]["filename"] == "/m/g1b.fits"
    assert answer["provenance"] == {
        "provenance_version": 2,
        "type": "flat",
        "mode": "exact",
        "as_of": None,
        "nightlake_version": __version__,
        "db": expected_db(db, lines, content),
    }

    # as of the first add: the state and position of then, and the time asked
    first = read_journal(db)[1]["time"]
    register(db, [flat(2, "r", 0, 2, 2, "later")])  # a later change does not move the answer
    out = io.StringIO()
    argv += ["--mode", "recent", "--as-of", first, "--image", str(image)]
    assert run(argv, out=out) == 0
    answers = json.loads(out.getvalue())
    assert len(answers) == 2 and answers[0]["provenance"] == answers[1]["provenance"]
    then = answers[0]["provenance"]
    assert then["mode"] == "recent" and then["as_of"].startswith(first[:26])
    # the file of then is gone: its SHA-256 and position are the journal's
    assert then["db"]["journal"] == expected_db(db, lines[:2], b"")["journal"]
    assert then["db"]["sha256"] == read_journal(db)[1]["sha256"]


def test_export_of_a_resolution_carries_the_provenance(journaled):
    lake = Lake(journaled / "lake")
    db = journaled / "d.db"
    lines, content = journal_lines(db), db.read_bytes()
    out = journaled / "flat.parquet"
    export(lake, "SELECT night, visit, detrend_filename FROM resolve_detrends('flat')", out)
    info = json.loads(pq.read_schema(out).metadata[b"nightlake.export"])
    assert info["db"] == expected_db(db, lines, content)
    assert info["query"].startswith("SELECT night, visit")
    assert info["lake"]["path"] == str(lake.path.resolve()) and info["lake"]["files"] == 5
    assert info["nightlake_version"] == __version__

    # through detrend_for too, and a bound parameter
    query = (
        "SELECT detrend_for('flat', detector, filter, obs_time) AS d FROM images WHERE visit = $v"
    )
    export(lake, query, journaled / "one.parquet", params={"v": 10})
    assert b"nightlake.export" in pq.read_schema(journaled / "one.parquet").metadata


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM images",
        "WITH unused AS (SELECT * FROM detrends) SELECT count(*) AS n FROM images",
    ],
)
def test_an_export_that_does_not_read_the_mirror_has_none(journaled, query):
    out = journaled / "images.parquet"
    export(Lake(journaled / "lake"), query, out)
    assert b"nightlake.export" not in (pq.read_schema(out).metadata or {})


def test_an_export_of_a_lake_without_a_mirror(tmp_path):
    write_lake(tmp_path / "lake")
    out = tmp_path / "images.parquet"
    export(Lake(tmp_path / "lake"), "SELECT visit FROM images", out)
    assert b"nightlake.export" not in (pq.read_schema(out).metadata or {})
