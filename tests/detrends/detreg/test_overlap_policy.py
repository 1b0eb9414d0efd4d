"""`detregister init --forbid-overlaps`: the OVERLAPS card, and add refusing overlapping records."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nightlake.detrends.detreg import add_records, init_db, make_records, read_db, read_journal
from nightlake.errors import InputError

from .test_cli import _run
from .test_interop import c_dump

PREVIOUS = Path(__file__).parents[3] / "data" / "fixtures" / "previous"


def _init(script, db, *extra):
    done = _run(script, "init", db, *extra)
    assert done.returncode == 0, done.stderr


def test_add_refuses_an_overlap_with_one_line_naming_the_record(
    tmp_path, master, detregister_script
):
    db = tmp_path / "d.db"
    _init(detregister_script, db, "--forbid-overlaps")
    first = master("first.fits")  # VR, CCD 5, September 2014
    assert _run(detregister_script, "add", "--db", db, first).returncode == 0
    before = db.read_bytes(), (tmp_path / "d.db.journal").read_bytes()
    late = master("late.fits", TV_START="2014-09-30T23:59:59", TV_STOP="2014-11-01T00:00:00")
    done = _run(detregister_script, "add", "--db", db, late)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert (
        "late.fits: flat ccd 5 [2014-09-30T23:59:59Z, 2014-11-01T00:00:00Z) overlaps record 0"
        in (done.stderr)
    )
    assert str(first) in done.stderr and "forbids overlaps" in done.stderr
    assert (db.read_bytes(), (tmp_path / "d.db.journal").read_bytes()) == before
    # not of the same class, or only touching: accepted
    fine = [
        master("g.fits", FILTER="g"),
        master("ccd6.fits", CCDNUM=6),
        master("next.fits", TV_START="2014-10-01T00:00:00", TV_STOP="2014-11-01T00:00:00"),
        master("bias.fits", IMAGETYP="bias", drop=("FILTER",)),
        master("d30.fits", IMAGETYP="dark", EXPTIME=30.0, drop=("FILTER",)),
        master("d60.fits", IMAGETYP="dark", EXPTIME=60.0, drop=("FILTER",)),
    ]
    done = _run(detregister_script, "add", "--db", db, *fine)
    assert done.returncode == 0, done.stderr
    # two overlapping records within one add: the message says which of them
    darks = [master(f"d{i}.fits", IMAGETYP="dark", EXPTIME=30.0, drop=("FILTER",)) for i in (1, 2)]
    done = _run(
        detregister_script, "add", "--db", db, "--tstart", "2015-01-01", "--tstop", "never", *darks
    )
    assert done.returncode == 1 and "overlaps record 1 of this add" in done.stderr, done.stderr
    assert len(read_db(db)) == 1 + len(fine)


def test_the_policy_is_a_header_card_kept_by_every_rewrite(tmp_path, master, detregister_script):
    db = tmp_path / "d.db"
    _init(detregister_script, db, "--forbid-overlaps")
    header = db.read_bytes()[:2880].decode()
    assert "OVERLAPS= 'FORBID  '" in header and "DBVERS  =                    2" in header
    assert read_journal(db)[0]["overlaps"] == "forbid"
    assert _run(detregister_script, "add", "--db", db, master("a.fits")).returncode == 0
    done = _run(detregister_script, "delete", "--db", db, "--type", "flat")
    assert done.returncode == 0, done.stderr
    assert read_db(db).overlaps == "forbid" and "OVERLAPS= 'FORBID  '" in db.read_text("latin-1")
    # the default file is written exactly as before: no card, version 1
    plain = init_db(tmp_path / "plain.db")
    text = plain.path.read_bytes()[:2880].decode()
    assert "OVERLAPS" not in text and "DBVERS  =                    1" in text


def test_old_files_keep_allowing_overlaps(tmp_path, master, detregister_script):
    db = tmp_path / "previous.db"
    shutil.copy(PREVIOUS / "detrends.db", db)
    shutil.copy(PREVIOUS / "detrends.db.journal", tmp_path / "previous.db.journal")
    assert read_db(db).overlaps == "allow"
    twice = [master("x.fits"), master("y.fits")]  # the same range twice
    done = _run(detregister_script, "add", "--db", db, *twice)
    assert done.returncode == 0, done.stderr
    assert read_db(db).overlaps == "allow" and b"OVERLAPS" not in db.read_bytes()[:2880]


def test_a_bad_overlaps_card_is_one_error_line(tmp_path, detregister_script):
    db = tmp_path / "d.db"
    _init(detregister_script, db, "--forbid-overlaps")
    raw = db.read_bytes().replace(b"OVERLAPS= 'FORBID  '", b"OVERLAPS= 'MAYBE   '")
    db.write_bytes(raw)
    done = _run(detregister_script, "list", "--db", db)
    assert done.returncode == 1
    assert (
        done.stderr
        == f"detregister: error: {db}: OVERLAPS card: expected 'ALLOW' or 'FORBID', found 'MAYBE'\n"
    )


def test_the_c_tool_reads_a_file_that_forbids_overlaps(tmp_path, c_tool):
    db = init_db(tmp_path / "d.db", forbid_overlaps=True).path
    rows = [
        dict(type=3, ccd=1, filter=-1, tstart=100, tstop=200, treg=1, filename=b"/m/a.fits"),
        dict(type=3, ccd=1, filter=-1, tstart=200, tstop=300, treg=1, filename=b"/m/b.fits"),
    ]
    add_records(db, make_records(rows))
    dump = c_dump(c_tool, db)
    assert [d[-1] for d in dump] == ["/m/a.fits", "/m/b.fits"]


SPAN = st.tuples(st.integers(0, 8), st.integers(0, 8))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from([1, 2, 3]), st.integers(1, 2), SPAN), max_size=6))
def test_refused_exactly_when_some_instant_is_covered_twice_in_one_class(tmp_path_factory, recs):
    db = init_db(tmp_path_factory.mktemp("p") / "d.db", forbid_overlaps=True).path
    accepted: list[tuple] = []
    for kind, ccd, (start, stop) in recs:
        row = dict(type=kind, ccd=ccd, filter=30 if kind == 2 else -1, tstart=start, tstop=stop)
        # brute force: an instant (whole second) both this record and an accepted one cover
        clash = any(
            (k, c) == (kind, ccd) and any(s0 <= t < s1 and start <= t < stop for t in range(9))
            for k, c, (s0, s1) in accepted
        )
        if clash:
            with pytest.raises(InputError, match="overlaps record"):
                add_records(db, make_records([dict(row, treg=1, filename=b"/m/x")]))
        else:
            add_records(db, make_records([dict(row, treg=1, filename=b"/m/x")]))
            accepted.append((kind, ccd, (start, stop)))
    assert len(read_db(db)) == len(accepted)
    assert np.all(read_db(db).records["type"] > 0)
