"""C interoperability: a C program using the struct writes and dumps; Python agrees."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from nightlake.detrends.detreg import OPEN_ENDED, make_records, read_db, register, write_db

N = 64


def c_dump(tool, path) -> list[list[str]]:
    out = subprocess.run(
        [str(tool), "dump", str(path)],
        check=True,
        capture_output=True,
        text=True,
        errors="surrogateescape",
    )
    return [line.split("\t") for line in out.stdout.splitlines()]


def expected_c_record(i: int) -> dict:
    """What detreg_tool.c's make_record() puts in record i (written out independently)."""
    tstart = 1400000000 + i * 86400
    type_ = 1 + i % 5
    return {
        "tstart": tstart,
        "tstop": OPEN_ENDED if i % 3 == 0 else tstart + 30 * 86400,
        "treg": 1500000000 + i,
        "sigma": np.float32(1.0) + np.float32(0.25) * np.float32(i),
        "clipsigma": np.float32(0.5) * np.float32(i),
        "type": type_,
        "filter": 30 + i if type_ == 2 else (1 + i % 2 if type_ in (3, 4) else -1),
        "ccd": 1 + i % 62,
        "filename": ("/" + "x" * 252)
        if i == 0
        else f"/deep/masters/c{1 + i % 62:02d}/master_{i:04d}.fits",
        "flag1": i % 100 - 50,
        "flag2": i % 7,
    }


def assert_matches_dump(db, dump):
    assert len(dump) == len(db)
    for rec, fields in zip(db.records, dump):
        _index, tstart, tstop, treg, sigma, clipsigma, type_, filt, ccd, f1, f2, name = fields
        assert (int(rec["tstart"]), int(rec["tstop"]), int(rec["treg"])) == (
            int(tstart),
            int(tstop),
            int(treg),
        )
        assert np.float32(rec["sigma"]).tobytes() == np.float32(float(sigma)).tobytes() or (
            np.isnan(rec["sigma"]) and sigma == "nan"
        )
        assert np.float32(rec["clipsigma"]).tobytes() == np.float32(float(clipsigma)).tobytes() or (
            np.isnan(rec["clipsigma"]) and clipsigma == "nan"
        )
        assert (int(rec["type"]), int(rec["filter"]), int(rec["ccd"])) == (
            int(type_),
            int(filt),
            int(ccd),
        )
        assert (int(rec["flag1"]), int(rec["flag2"])) == (int(f1), int(f2))
        assert bytes(rec["filename"]) == name.encode("utf-8", "surrogateescape")


@pytest.mark.parametrize("mode", ["write", "write-dirty"])
def test_python_reads_what_c_wrote(c_tool, tmp_path, mode):
    path = tmp_path / "c.db"
    subprocess.run([str(c_tool), mode, str(path), str(N)], check=True)
    db = read_db(path)
    assert (db.layout, db.byteorder, len(db)) == ("LP64", "little", N)
    assert db.filters == {1: "VR DECam c0007 6300.0 2600.0", 2: "g DECam SDSS c0001 4720.0 1520.0"}
    # field by field against the C program's own dump …
    assert_matches_dump(db, c_dump(c_tool, path))
    # … and against the values written out here from the C source
    expected = make_records([expected_c_record(i) for i in range(N)])
    for name in expected.dtype.names:
        assert np.array_equal(db.records[name], expected[name]), name
    names = db.to_arrow()["filename"].to_pylist()
    assert names == [expected_c_record(i)["filename"] for i in range(N)]


def test_dirty_c_file_is_rewritten_clean(c_tool, tmp_path):
    path = tmp_path / "dirty.db"
    subprocess.run([str(c_tool), "write-dirty", str(path), "5"], check=True)
    register(path, [])  # a rewrite under the lock
    data = path.read_bytes()
    assert b"\xab" not in data  # padding and bytes after each NUL are zeros now
    assert_matches_dump(read_db(path), c_dump(c_tool, path))


def test_c_reads_what_python_wrote(c_tool, tmp_path):
    rows = [
        {
            "tstart": 0,
            "tstop": None,
            "treg": 2**63,
            "sigma": 1.25,
            "clipsigma": -0.5,
            "type": "bias",
            "ccd": 1,
            "filename": "/" + "a" * 252,
            "flag1": -128,
            "flag2": 127,
        },
        {
            "tstart": 1409529600,
            "tstop": 1412121600,
            "treg": 1500000000,
            "sigma": 3.5e-8,
            "clipsigma": 7e20,
            "type": "flat",
            "filter": 3,
            "ccd": 62,
            "filename": "/deep/masters/flat VR c62.fits",
            "flag1": 1,
            "flag2": -1,
        },
        {
            "tstart": 5,
            "tstop": 6,
            "treg": 7,
            "sigma": float("nan"),
            "clipsigma": 0.0,
            "type": "dark",
            "filter": 150,
            "ccd": -3,
            "filename": "",
            "flag1": 0,
            "flag2": 0,
        },
    ]
    path = tmp_path / "py.db"
    write_db(path, make_records(rows), {3: "VR DECam c0007 6300.0 2600.0"})
    dump = c_dump(c_tool, path)
    assert_matches_dump(read_db(path), dump)
    assert dump[0][2] == str(2**64 - 1)  # the C program sees ULONG_MAX for open-ended
    assert dump[1][11] == "/deep/masters/flat VR c62.fits"


def test_c_reads_a_database_built_by_detregister(c_tool, tmp_path, master, detreg_cli):
    db = tmp_path / "d.db"
    assert detreg_cli("init", db).exit_code == 0
    files = [master(f"m{i}.fits", CCDNUM=i + 1) for i in range(3)]
    result = detreg_cli("add", "--db", db, *files, "--tstop", "never")
    assert result.exit_code == 0, result.output
    dump = c_dump(c_tool, db)
    assert [row[8] for row in dump] == ["1", "2", "3"]
    assert [row[11] for row in dump] == [str(f.absolute()) for f in files]
    assert all(row[2] == str(2**64 - 1) for row in dump)
