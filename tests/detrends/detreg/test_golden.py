"""The committed golden DetReg files (data/fixtures/detreg/) read as their expected.json says."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess

import numpy as np
import pytest

from nightlake.detrends.detreg import OPEN_ENDED, TYPE_NAMES, make_records, read_db, write_db

from .test_interop import assert_matches_dump, c_dump

GOLDEN = ["lp64-little", "lp64-big", "ilp32-little", "ilp32-big"]


@pytest.fixture
def golden(fixtures_dir):
    return fixtures_dir / "detreg"


@pytest.fixture
def expected(golden):
    return json.loads((golden / "expected.json").read_text())


def _load_script(golden):
    spec = importlib.util.spec_from_file_location(
        "make_detreg_fixtures", golden / "make_detreg_fixtures.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_reads_as_expected(golden, expected, name):
    db = read_db(golden / f"{name}.db")
    layout, byteorder = name.split("-")
    assert (db.layout, db.byteorder) == (layout.upper(), byteorder)
    assert db.filters == {int(k): v for k, v in expected["filters"].items()}
    assert db.date == expected["date"]
    rows = db.to_arrow().to_pylist()
    assert len(rows) == len(expected["records"])
    for i, (row, want) in enumerate(zip(rows, expected["records"])):
        assert row["index"] == i
        tstop = OPEN_ENDED if want["tstop"] is None else want["tstop"]
        assert (row["tstart"], row["tstop"], row["treg"]) == (want["tstart"], tstop, want["treg"])
        for key in ("sigma", "clipsigma"):
            if want[key] is None:
                assert math.isnan(row[key])
            else:
                assert row[key] == np.float32(want[key])
        for key in ("type", "filter", "ccd", "filename", "flag1", "flag2"):
            assert row[key] == want[key], key
        assert TYPE_NAMES[row["type"]] in ("bias", "dark", "flat", "fringe", "mask")


def test_regenerating_gives_the_same_bytes(golden, tmp_path):
    for path in _load_script(golden).write_fixtures(tmp_path):
        assert path.read_bytes() == (golden / path.name).read_bytes(), path.name


@pytest.mark.parametrize("name", GOLDEN)
def test_our_writer_reproduces_the_golden_records(golden, expected, tmp_path, name):
    layout, byteorder = name.split("-")
    rows = [
        dict(
            r,
            sigma=math.nan if r["sigma"] is None else r["sigma"],
            clipsigma=math.nan if r["clipsigma"] is None else r["clipsigma"],
        )
        for r in expected["records"]
    ]
    path = tmp_path / "ours.db"
    write_db(
        path,
        make_records(rows),
        {int(k): v for k, v in expected["filters"].items()},
        layout=layout.upper(),
        byteorder=byteorder,
    )
    assert path.read_bytes()[2880:] == (golden / f"{name}.db").read_bytes()[2880:]


def test_c_reads_the_golden_lp64_file(golden, c_tool):
    path = golden / "lp64-little.db"
    assert_matches_dump(read_db(path), c_dump(c_tool, path))
    assert (
        subprocess.run(
            [str(c_tool), "dump", str(golden / "lp64-big.db")], capture_output=True
        ).returncode
        != 0
    )  # not native: C refuses it
