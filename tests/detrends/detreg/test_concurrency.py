"""Real processes against one database: concurrent writers, and a writer killed mid-write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from nightlake.detrends.detreg import init_db, make_records, read_db, read_journal, write_db

from .conftest import write_master

PROCESSES, ADDS = 8, 50

# Each worker runs the real console-script entry point 50 times, one `add` per master.
WORKER = textwrap.dedent("""
    import sys
    from nightlake.cli.detreg_cmds import main
    db, worker, adds, directory = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    for i in range(adds):
        try:
            main(["add", "--db", db, "--lock-timeout", "120",
                  f"{directory}/w{worker}_{i:02d}.fits"])
        except SystemExit as exc:
            if exc.code:
                raise
""")


@pytest.mark.slow
def test_eight_processes_fifty_adds_each(tmp_path):
    masters = tmp_path / "masters"
    masters.mkdir()
    for worker in range(PROCESSES):
        for i in range(ADDS):
            write_master(
                masters / f"w{worker}_{i:02d}.fits",
                IMAGETYP="flat",
                FILTER=f"filter-{worker}",
                CCDNUM=worker * 100 + i,
                TV_START=1400000000 + i,
                TV_STOP="never",
            )
    db = tmp_path / "detrend.db"
    init_db(db)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(db), str(w), str(ADDS), str(masters)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(PROCESSES)
    ]
    errors = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _ in errors), errors
    database = read_db(db)
    assert len(database) == PROCESSES * ADDS
    assert sorted(database.records["ccd"].tolist()) == sorted(
        w * 100 + i for w in range(PROCESSES) for i in range(ADDS)
    )
    # every worker's filter got exactly one code
    assert sorted(database.filters.values()) == sorted(f"filter-{w}" for w in range(PROCESSES))
    assert len(set(database.filters)) == PROCESSES
    for rec in database.records:
        assert database.filters[int(rec["filter"])] == f"filter-{int(rec['ccd']) // 100}"
    journal = read_journal(db)
    adds = [e for e in journal if e["action"] == "add"]
    assert len(adds) == PROCESSES * ADDS and len(journal) == PROCESSES * ADDS + 1
    assert [e["nrecord"] for e in adds] == list(range(1, PROCESSES * ADDS + 1))
    assert adds[-1]["sha256"] == database.fingerprint["sha256"]
    assert not list(tmp_path.glob(".detrend.db.*.tmp"))


# Rewrites a large database forever, 1000 more records each time.
REWRITER = textwrap.dedent("""
    import sys
    from nightlake.detrends.detreg import register, DetRegEntry
    db = sys.argv[1]
    while True:
        entries = [DetRegEntry(filename=f"/m/{i}.fits", type="flat", ccd=i % 62, tstart=i,
                               tstop=i + 1, treg=0, filter="g") for i in range(1000)]
        register(db, entries)
""")


@pytest.mark.slow
def test_sigkill_during_a_large_write_leaves_a_valid_database(tmp_path):
    db = tmp_path / "big.db"
    base = np.repeat(
        make_records([{"type": "bias", "tstart": 1, "tstop": 2, "filename": "/m/bias.fits"}]),
        200_000,
    )
    write_db(db, base, {})
    init_size = len(read_db(db))
    kills_mid_write = 0
    for _attempt in range(4):
        proc = subprocess.Popen([sys.executable, "-c", REWRITER, str(db)])
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # wait until a temp file is being written
                if list(tmp_path.glob(".big.db.*.tmp")):
                    break
                time.sleep(0.001)
            os.kill(proc.pid, signal.SIGKILL)
            kills_mid_write += bool(list(tmp_path.glob(".big.db.*.tmp")))
        finally:
            proc.kill()
            proc.wait()
        database = read_db(db)  # valid: the old or the new version, never torn
        assert (len(database) - init_size) % 1000 == 0
        assert np.all(database.records["type"][:init_size] == 1)
        journal = read_journal(db)
        # adds that took effect: an add followed by an `abandoned` marker never did
        journal_adds = len(
            [
                e
                for e, after in zip(journal, journal[1:] + [{}])
                if e["action"] == "add" and after.get("action") != "abandoned"
            ]
        )
        # a journal line is fsynced before the replace, so it may be one ahead of the file
        assert journal_adds - (len(database) - init_size) // 1000 in (0, 1)
    assert kills_mid_write >= 1, "never caught a writer with its temp file open"
    # the next writer cleans up the dead writer's temp file
    from nightlake.detrends.detreg import register

    register(db, [])
    assert not list(tmp_path.glob(".big.db.*.tmp"))


@pytest.mark.slow
def test_sigkill_of_detregister_add_at_random_moments(tmp_path, detregister_script):
    """Real `detregister add` processes killed at seeded random moments: after each kill the
    database is its old or its new state, and after the next add the journal verifies."""
    import random

    from typer.testing import CliRunner

    from nightlake.cli.app import app

    runner = CliRunner()
    mef = write_master(
        tmp_path / "mef.fits",
        IMAGETYP="flat",
        FILTER="g",
        TV_START=1,
        TV_STOP="never",
        extensions=[{"CCDNUM": n} for n in range(1, 63)],
    )
    single = write_master(
        tmp_path / "one.fits", IMAGETYP="bias", CCDNUM=1, TV_START=1, TV_STOP="never"
    )
    db = tmp_path / "detrend.db"
    init_db(db)
    # kill points spread over the span of one whole run, measured here (not asserted on)
    start = time.monotonic()
    subprocess.run(
        [str(detregister_script), "add", "--db", str(db), str(mef)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    span = time.monotonic() - start
    rng = random.Random(20240917)
    outcomes = []
    for _ in range(6):
        before = len(read_db(db))
        proc = subprocess.Popen(
            [str(detregister_script), "add", "--db", str(db), str(mef)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            proc.wait(timeout=rng.uniform(0.6, 1.05) * span)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        after = len(read_db(db))  # never torn
        assert after in (before, before + 62)
        outcomes.append((proc.returncode, after - before))
        # the next writer settles whatever the kill left, and the journal verifies
        done = runner.invoke(app, ["detregister", "add", "--db", str(db), str(single)])
        assert done.exit_code == 0, done.output
        checked = runner.invoke(app, ["detregister", "check", str(db)])
        assert checked.exit_code == 0, (outcomes, checked.output)
        assert not list(tmp_path.glob(".detrend.db.*.tmp"))
        assert read_journal(db)[-1]["sha256"] == read_db(db).fingerprint["sha256"]
    print("kill outcomes (returncode, records added):", outcomes)
