"""`nightlake detregister …` and the `detregister` console script, run as a user would."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess

import pytest
from reference import read_table

from nightlake.cli.detreg_cmds import elixir_argv
from nightlake.detrends.detreg import OPEN_ENDED, read_db, read_journal

from .conftest import FLAT_CARDS


@pytest.fixture
def db(tmp_path, detreg_cli):
    path = tmp_path / "detrend.db"
    result = detreg_cli("init", path)
    assert result.exit_code == 0, result.output
    return path


def test_init_add_list(db, master, detreg_cli):
    flat = master()
    dark = master("dark.fits", IMAGETYP="dark", EXPTIME=30.0, drop=("FILTER",), CCDNUM=2)
    result = detreg_cli("add", "--db", db, flat, dark, "--treg", "2014-09-02T00:00:00")
    assert result.exit_code == 0, result.output
    assert "registered 2 record(s) from 2 file(s)" in result.stdout
    database = read_db(db)
    assert database.filters == {1: "VR DECam c0007 6300.0 2600.0"}
    assert database.records["filter"].tolist() == [1, 30]
    assert database.records["treg"].tolist() == [1409616000] * 2
    table = detreg_cli("list", "--db", db)
    assert table.exit_code == 0
    shown = [
        (r["index"], r["type"], r["ccd"], r["filter"], r["tstart"], r["treg"], r["filename"])
        for r in read_table(table.stdout)
    ]
    assert shown == [
        ("0", "flat", "5", FLAT_CARDS["FILTER"], "2014-09-01T00:00:00Z", "2014-09-02T00:00:00Z")
        + (str(flat.absolute()),),
        ("1", "dark", "2", "30s", "2014-09-01T00:00:00Z", "2014-09-02T00:00:00Z")
        + (str(dark.absolute()),),
    ]


def test_list_formats_and_filters(db, master, detreg_cli):
    files = [master(f"f{i}.fits", CCDNUM=i, FILTER="g" if i % 2 else "r") for i in range(1, 5)]
    assert detreg_cli("add", "--db", db, *files, "--tstop", "never").exit_code == 0
    rows = json.loads(detreg_cli("list", "--db", db, "--format", "json", "--filter", "g").stdout)
    assert [r["ccd"] for r in rows] == [1, 3] and [r["index"] for r in rows] == [0, 2]
    assert all(r["tstop"] is None and r["filter_name"] == "g" for r in rows)
    out = detreg_cli("list", "--db", db, "--format", "csv", "--ccd", "4", "--type", "flat").stdout
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert row["ccd"] == "4" and row["filter_name"] == "r" and row["tstop"] == ""
    assert row["filename"] == str(files[3].absolute())
    empty = detreg_cli("list", "--db", db, "--type", "bias")
    assert empty.exit_code == 0 and read_table(empty.stdout) == []
    bad = detreg_cli("list", "--db", db, "--format", "xml")
    assert bad.exit_code == 2 and "--format must be table, csv or json" in bad.stderr


def test_overrides_and_never(db, master, detreg_cli):
    bare = master("bare.fits", drop=("IMAGETYP", "FILTER", "CCDNUM", "TV_START", "TV_STOP"))
    result = detreg_cli(
        "add",
        "--db",
        db,
        bare,
        "--type",
        "fringe",
        "--filter",
        "z",
        "--ccd",
        "31",
        "--tstart",
        "1400000000",
        "--tstop",
        "never",
        "--sigma",
        "2.5",
        "--clipsigma",
        "2",
        "--treg",
        "1500000000",
    )
    assert result.exit_code == 0, result.output
    [rec] = read_db(db).records
    assert (int(rec["type"]), int(rec["ccd"]), int(rec["tstart"]), int(rec["tstop"])) == (
        4,
        31,
        1400000000,
        OPEN_ENDED,
    )
    assert (float(rec["sigma"]), float(rec["clipsigma"]), int(rec["treg"])) == (
        2.5,
        2.0,
        1500000000,
    )


def test_delete_commands(db, master, detreg_cli):
    files = [master(f"f{i}.fits", CCDNUM=i) for i in range(1, 4)]
    assert detreg_cli("add", "--db", db, *files).exit_code == 0
    dry = detreg_cli("delete", "--db", db, "--type", "flat", "--ccd", "2", "--dry-run")
    assert dry.exit_code == 0 and "would delete 1 record(s)" in dry.stdout
    assert str(files[1].absolute()) in dry.stdout and len(read_db(db)) == 3
    gone = detreg_cli("delete", "--db", db, "--filename", files[0])
    assert gone.exit_code == 0 and "deleted 1 record(s)" in gone.stdout
    assert len(read_db(db)) == 2
    refuse = detreg_cli("delete", "--db", db)
    assert refuse.exit_code == 2 and "refusing to delete every record" in refuse.stderr
    narrow = detreg_cli("delete", "--db", db, "--ccd", "2")
    assert narrow.exit_code == 2 and "give --type too" in narrow.stderr
    assert len(read_db(db)) == 2
    everything = detreg_cli("delete", "--db", db, "--all")
    assert everything.exit_code == 0 and len(read_db(db)) == 0
    assert [e["action"] for e in read_journal(db)] == ["init", "add", "delete", "delete"]


def test_delete_by_exptime_takes_seconds_as_add_does(db, master, detreg_cli):
    """add rounds a dark's EXPTIME to the stored whole seconds; delete --exptime takes the
    same seconds, decimals and all (it took only integers)."""
    darks = [master(f"d{s}.fits", IMAGETYP="dark", EXPTIME=s) for s in (29.6, 60.0)]
    assert detreg_cli("add", "--db", db, "--type", "dark", *darks).exit_code == 0
    gone = detreg_cli("delete", "--db", db, "--type", "dark", "--exptime", "30.2")
    assert gone.exit_code == 0 and "deleted 1 record(s)" in gone.stdout
    assert [int(r["filter"]) for r in read_db(db).records] == [60]


def test_db_from_environment(db, master, detreg_cli, monkeypatch):
    monkeypatch.setenv("NIGHTLAKE_DETREG", str(db))
    assert detreg_cli("add", master()).exit_code == 0
    assert len(read_db(db)) == 1
    monkeypatch.delenv("NIGHTLAKE_DETREG")
    result = detreg_cli("list")
    assert result.exit_code == 2 and "no database: give --db DB" in result.stderr


@pytest.mark.parametrize(
    "args,cause",
    [
        (["--type", "sky"], "--type: unknown detrend type 'sky'"),
        (["--tstart", "2014-10-01", "--tstop", "2014-09-01"], "at or before it starts"),
        (["--tstop", "soon"], "field --tstop: expected ISO-8601"),
    ],
)
def test_add_refusals_write_nothing(db, master, detreg_cli, args, cause):
    before = db.read_bytes()
    result = detreg_cli("add", "--db", db, master(), *args)
    assert result.exit_code != 0 and cause in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert db.read_bytes() == before and len(read_journal(db)) == 1


@pytest.mark.parametrize(
    "drop,cards,field",
    [
        (("IMAGETYP",), {}, "IMAGETYP"),
        (("FILTER",), {}, "FILTER"),
        (("CCDNUM",), {}, "CCDNUM"),
        (("TV_START",), {}, "TV_START"),
        (("TV_STOP",), {}, "TV_STOP"),
        ((), {"IMAGETYP": "dark"}, "EXPTIME"),
    ],
)
def test_add_missing_keyword(db, master, detreg_cli, drop, cards, field):
    good = master("good.fits")
    bad = master("bad.fits", drop=drop, **cards)
    before = db.read_bytes()
    result = detreg_cli("add", "--db", db, good, bad)
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert f"error: {bad}: field {field}: missing from the header" in line
    assert "no --" in line or "no OBSTYPE" in line
    assert db.read_bytes() == before  # all or nothing: the good file is not registered either


def test_add_unreadable_and_long_filename(db, master, detreg_cli, tmp_path):
    broken = tmp_path / "broken.fits"
    broken.write_bytes(b"\0" * 100)
    result = detreg_cli("add", "--db", db, broken)
    assert result.exit_code == 1 and f"{broken}: unreadable FITS file" in result.stderr
    deep = tmp_path / ("d" * 250)
    deep.mkdir()
    result = detreg_cli("add", "--db", db, deep / "flat.fits")
    assert result.exit_code == 1 and "at most 253" in result.stderr
    assert len(read_db(db)) == 0


def test_init_refuses_existing(db, detreg_cli):
    result = detreg_cli("init", db)
    assert result.exit_code == 1 and "already exists" in result.stderr


def test_plain_progress_when_not_a_terminal(db, master, detreg_cli):
    files = [master(f"p{i:03d}.fits", CCDNUM=i) for i in range(60)]
    result = detreg_cli("add", "--db", db, *files)
    assert result.exit_code == 0
    progress = [line for line in result.stderr.splitlines() if line.startswith("reading headers")]
    assert progress[-1] == "reading headers: 60/60" and 2 <= len(progress) <= 12
    assert len(read_db(db)) == 60 and len(read_journal(db)) == 2  # one rewrite


def test_mef_registers_each_extension(db, master, detreg_cli):
    mef = master("mef.fits", drop=("CCDNUM",), extensions=[{"CCDNUM": n} for n in (1, 2, 3)])
    assert detreg_cli("add", "--db", db, mef).exit_code == 0
    assert read_db(db).records["ccd"].tolist() == [1, 2, 3]


def test_elixir_argv_rewrites():
    assert elixir_argv(["-type", "flat", "-ccd", "5", "m.fits"]) == [
        "add",
        "--type",
        "flat",
        "--ccd",
        "5",
        "m.fits",
    ]
    assert elixir_argv(["list", "-db", "x", "-format=csv"]) == ["list", "--db", "x", "--format=csv"]
    assert elixir_argv(["delete", "-dry-run", "--ccd", "-1"]) == [
        "delete",
        "--dry-run",
        "--ccd",
        "-1",
    ]
    assert elixir_argv(["--help"]) == ["--help"] == elixir_argv(["-h"]) == elixir_argv(["-help"])
    assert elixir_argv([]) == []


def _run(script, *args, env=None):
    return subprocess.run(
        [str(script), *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_console_script_with_elixir_spellings(tmp_path, master, detregister_script):
    db = tmp_path / "d.db"
    assert _run(detregister_script, "init", db).returncode == 0
    flat = master(drop=("CCDNUM",))
    done = _run(detregister_script, "-db", db, "-type", "flat", "-ccd", "5", flat)
    assert done.returncode == 0, done.stderr
    [rec] = read_db(db).records
    assert int(rec["ccd"]) == 5 and int(rec["type"]) == 3
    listed = _run(detregister_script, "list", "-db", db, "-format", "json")
    assert json.loads(listed.stdout)[0]["ccd"] == 5


def test_console_script_error_line(tmp_path, detregister_script):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"nonsense" * 400)
    result = _run(detregister_script, "list", "--db", bad)
    assert result.returncode == 1
    assert (
        result.stderr == f"detregister: error: {bad}: not a FITS file: it does not start "
        "with a SIMPLE card\n"
    )


def test_nightlake_detregister_help_lists_subcommands(detreg_cli):
    result = detreg_cli("--help")
    assert result.exit_code == 0
    for sub in ("init", "add", "delete", "list"):
        assert sub in result.stdout
