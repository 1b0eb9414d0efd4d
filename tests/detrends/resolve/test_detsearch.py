"""detsearch as users run it: one image, Elixir's spelling, batches, listings, errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from reference import read_table
from typer.testing import CliRunner

from nightlake.cli.detsearch import run
from nightlake.errors import NightlakeError

from .conftest import T0, VR, record, write_detreg

BIN = Path(sys.executable).parent
ROWS = [
    record("flat", 0, 1, -100, 100, 1, "flat_c0"),
    record("flat", 5, 2, -100, 100, 1, "flat_c5"),
    record("flat", 5, 1, -900, -500, 2, "flat_old"),
    record("bias", 7, -1, -100, None, 1, "bias_c7"),
    record("dark", 5, 60, -100, 100, 1, "dark60"),
    record("dark", 5, 300, -100, 100, 1, "dark300"),
]


def image(path, *, ccd=5, filt=VR, exptime=200.0, date="2019-04-02T05:13:00", extensions=()):
    primary = fits.PrimaryHDU(None if extensions else np.zeros((2, 2), np.int16))
    header = primary.header
    if ccd is not None:
        header["CCDNUM"] = ccd
    if filt is not None:
        header["FILTER"] = filt
    if exptime is not None:
        header["EXPTIME"] = exptime
    header["DATE-OBS"] = date
    hdus = [primary]
    for number in extensions:
        ext = fits.ImageHDU(np.zeros((2, 2), np.float32))
        ext.header["CCDNUM"] = number
        hdus.append(ext)
    fits.HDUList(hdus).writeto(path)
    return path


@pytest.fixture
def db(tmp_path):
    return write_detreg(tmp_path / "detrend.db", ROWS)


def search(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = run([str(a) for a in argv], out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def console(*argv, env=None):
    """The installed ``detsearch`` script, as a shell script would run it."""
    return subprocess.run(
        [str(BIN / "detsearch"), *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_one_image_prints_the_filename_alone(db, tmp_path):
    img = image(tmp_path / "a.fits")
    assert search("--db", db, "--image", img, "--type", "flat") == (0, "/m/flat_c5.fits\n", "")


def test_json_has_the_record_the_rule_and_the_dark_scale(db, tmp_path):
    img = image(tmp_path / "a.fits", exptime=200.0)
    status, out, _ = search("--db", db, "--image", img, "--type", "dark", "--format", "json")
    answer = json.loads(out)
    assert status == 0
    assert (answer["rule"], answer["scale"]) == ("exact", 200.0 / 300)
    assert answer["record"]["filename"] == "/m/dark300.fits"
    assert answer["record"]["dark_exptime"] == 300 and answer["record"]["index"] == 5
    assert answer["record"]["tstart"] == "2019-04-02T05:11:20Z"
    assert answer["time"] == "2019-04-02T05:13:00Z"
    status, out, _ = search("--db", db, "--image", img, "--type", "dark", "--format", "table")
    [row] = read_table(out)
    assert (row["rule"], row["filename"], row["index"]) == ("exact", "/m/dark300.fits", "5")
    assert (row["image"], row["ccd"], row["time"]) == (str(img), "5", "2019-04-02T05:13:00Z")


def test_recent_mode_and_overrides(db, tmp_path):
    img = image(tmp_path / "a.fits", date="2019-04-02T05:05:00")  # between flat_old and flat_c5
    with pytest.raises(NightlakeError, match="no flat .* at 2019-04-02T05:05:00Z .exact mode"):
        search("--db", db, "--image", img, "--type", "flat")
    status, out, _ = search(
        "--db", db, "--image", img, "--type", "flat", "--mode", "recent", "--format", "json"
    )
    assert json.loads(out)["rule"] == "recent"
    assert json.loads(out)["record"]["filename"] == "/m/flat_old.fits"
    assert (
        search("--db", db, "--image", img, "--type", "flat", "--time", "2019-04-02T05:13:30Z")[1]
        == "/m/flat_c5.fits\n"
    )
    assert (
        search("--db", db, "--image", img, "--type", "flat", "--time", str(T0))[1]
        == "/m/flat_c5.fits\n"
    )
    assert (
        search("--db", db, "--image", img, "--type", "flat", "--ccd", "0", "--time", str(T0))[1]
        == "/m/flat_c0.fits\n"
    )


def test_nothing_found_exits_1_with_the_request_in_words(db, tmp_path):
    img = image(tmp_path / "a.fits", filt="r")
    with pytest.raises(NightlakeError) as info:
        search("--db", db, "--image", img, "--type", "flat")
    assert str(info.value) == "no flat for ccd 5, filter r at 2019-04-02T05:13:00Z (exact mode)"
    done = console("--db", db, "--image", img, "--type", "flat", "--mode", "recent")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        "detsearch: error: no flat for ccd 5, filter r at 2019-04-02T05:13:00Z (recent mode)\n"
    )


def test_elixir_spelling_split_and_mef(db, tmp_path):
    example = image(tmp_path / "example.fits", ccd=None)
    done = console("-image", example, "00", "split", "-type", "flat", "-db", db)
    assert (done.returncode, done.stdout, done.stderr) == (0, "/m/flat_c0.fits\n", "")
    mef = image(tmp_path / "mef.fits", ccd=None, extensions=[5, 7])
    done = console("-image", mef, "7", "mef", "-type", "bias", "-db", db, "-mode", "exact")
    assert (done.returncode, done.stdout) == (0, "/m/bias_c7.fits\n")
    done = console(
        "-image",
        mef,
        "5",
        "mef",
        "-type",
        "flat",
        "-db",
        db,
        "-filter",
        "VR",
        "-time",
        "2019-04-02T05:12:00",
    )
    assert (done.returncode, done.stdout) == (0, "/m/flat_c5.fits\n")
    done = console("-image", mef, "3", "mef", "-type", "flat", "-db", db)
    assert done.returncode == 1
    assert (
        done.stderr == f"detsearch: error: {mef}: no extension for ccd 3 (looked at CCDNUM "
        "and EXTNAME of 2 extensions)\n"
    )


def test_batch_prints_one_line_per_image(db, tmp_path):
    a = image(tmp_path / "a.fits")
    b = image(tmp_path / "b.fits", ccd=0)
    c = image(tmp_path / "c.fits", filt="r")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{a}\n{b}\n\n{c}\n")
    status, out, err = search("--db", db, "--type", "flat", "--image", f"@{listing}")
    assert status == 1
    assert out == f"{a}\t/m/flat_c5.fits\n{b}\t/m/flat_c0.fits\n{c}\t\n"
    assert (
        err == f"detsearch: {c}: no flat for ccd 5, filter r at 2019-04-02T05:13:00Z (exact mode)\n"
    )
    done = console("--db", db, "--type", "flat", "--image", a, b)
    assert (done.returncode, done.stdout) == (0, f"{a}\t/m/flat_c5.fits\n{b}\t/m/flat_c0.fits\n")
    status, out, _ = search("--db", db, "--type", "flat", "--image", a, b, "--format", "json")
    assert [x["record"]["filename"] for x in json.loads(out)] == [
        "/m/flat_c5.fits",
        "/m/flat_c0.fits",
    ]


def test_listing_without_an_image(db):
    status, out, _ = search("--db", db, "--type", "flat", "--ccd", "5")
    assert status == 0
    assert out.splitlines() == [
        "2019-04-02T05:11:20Z\tflat\t5\tVR\t/m/flat_c5.fits",
        f"2019-04-02T04:58:00Z\tflat\t5\t{VR}\t/m/flat_old.fits",
    ]
    _, out, _ = search("--db", db, "--type", "flat", "--ccd", "5", "--tstop")
    assert out.splitlines()[0].startswith("2019-04-02T05:14:40Z\t")
    _, out, _ = search("--db", db, "--type", "bias", "--tstop")
    assert out == "never\tbias\t7\t\t/m/bias_c7.fits\n"  # as detregister list
    _, out, _ = search("--db", db, "--time", "2019-04-02T05:00:00")
    assert out.splitlines() == [f"2019-04-02T04:58:00Z\tflat\t5\t{VR}\t/m/flat_old.fits"]
    _, out, _ = search(
        "--db",
        db,
        "--trange",
        "2019-04-02T05:04:39",
        "2019-04-02T05:11:21",
        "--ccd",
        "5",
        "--format",
        "json",
    )
    assert [r["index"] for r in json.loads(out)] == [1, 2, 4, 5]
    _, out, _ = search("--db", db, "--filter", "VR", "--treg")
    assert [line.split("\t")[-1] for line in out.splitlines()] == [
        "/m/flat_c0.fits",
        "/m/flat_c5.fits",
        "/m/flat_old.fits",
    ]
    _, out, _ = search("--db", db, "--type", "dark", "--filter", "300")
    assert out.endswith("\tdark\t5\t300\t/m/dark300.fits\n") and out.count("\n") == 1
    assert search("--db", db, "--type", "mask")[0] == 1


def test_nightlake_detsearch_is_the_same_program(db, tmp_path, cli):
    img = image(tmp_path / "a.fits")
    result = cli("detsearch", "-image", img, "-type", "flat", "-db", db)
    assert (result.exit_code, result.stdout) == (0, "/m/flat_c5.fits\n")
    result = cli("detsearch", "--image", img, "--type", "flat", "--db", db, "--ccd", "9")
    assert result.exit_code == 1
    assert result.stderr.endswith(
        ": error: no flat for ccd 9, filter VR DECam c0007 6300.0 "
        "2600.0 at 2019-04-02T05:13:00Z (exact mode)\n"
    )


@pytest.mark.parametrize(
    "setup, argv, status, message",
    [
        (
            None,
            ["--type", "flat", "--image", "{img}"],
            2,
            "no detrend database: give --db DB or set NIGHTLAKE_DETREG",
        ),
        (
            None,
            ["--db", "{tmp}/none.db", "--type", "flat", "--image", "{img}"],
            1,
            "{tmp}/none.db: No such file or directory",
        ),
        (
            "nofits",
            ["--db", "{db}", "--type", "flat", "--image", "{img}"],
            1,
            "{img}: not a FITS file",
        ),
        (
            "noccd",
            ["--db", "{db}", "--type", "flat", "--image", "{img}"],
            1,
            "{img}: no CCDNUM in the header; give --ccd N",
        ),
        (
            "nofilter",
            ["--db", "{db}", "--type", "flat", "--image", "{img}"],
            1,
            "{img}: no FILTER in the header",
        ),
        (
            "noexptime",
            ["--db", "{db}", "--type", "dark", "--image", "{img}"],
            1,
            "{img}: no EXPTIME in the header",
        ),
        (None, ["--db", "{db}", "--image", "{img}"], 2, "--type is required with --image"),
        (
            None,
            ["--db", "{db}", "--type", "flat", "--image", "@{tmp}/missing.txt"],
            1,
            "{tmp}/missing.txt: No such file",
        ),
        (
            None,
            ["--db", "{db}", "--type", "flats", "--image", "{img}"],
            2,
            "argument --type: invalid choice: 'flats'",
        ),
        (None, ["--db", "{db}", "--type", "flat", "--time", "soon"], 2, "not a time: 'soon'"),
    ],
)
def test_bad_inputs_give_one_line_naming_the_file(db, tmp_path, setup, argv, status, message):
    img = tmp_path / "img.fits"
    if setup == "nofits":
        img.write_bytes(b"not fits" * 400)
    else:
        image(
            img,
            ccd=None if setup == "noccd" else 5,
            filt=None if setup == "nofilter" else VR,
            exptime=None if setup == "noexptime" else 10.0,
        )
    fill = {"img": img, "db": db, "tmp": tmp_path}
    env = {k: v for k, v in __import__("os").environ.items() if k != "NIGHTLAKE_DETREG"}
    done = console(*[a.format(**fill) for a in argv], env=env)
    assert done.returncode == status
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("detsearch: error: ")
    assert message.format(**fill) in lines[0]
    assert done.stdout == ""


def test_detsearch_does_not_load_the_heavy_modules(db, tmp_path):
    img = image(tmp_path / "a.fits")
    code = (
        "import sys\nfrom nightlake.cli.detsearch import run\n"
        f"run(['--db', {str(db)!r}, '--image', {str(img)!r}, '--type', 'flat'])\n"
        "heavy = ('typer', 'duckdb', 'astropy', 'rich', 'click')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "[]", done.stderr


def test_a_reader_that_leaves_early_is_not_an_error(tmp_path):
    # `detsearch --type bias | head -c 0`, as for the nightlake command
    rows = [record("bias", i % 60, -1, -100, i, 1, f"bias{i}") for i in range(5000)]
    db = write_detreg(tmp_path / "many.db", rows)
    proc = subprocess.Popen(
        [str(BIN / "detsearch"), "--db", str(db), "--type", "bias"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert "error" not in stderr


def test_open_ended_reads_never_as_in_detregister_list(db):
    """detsearch and `detregister list` show an open-ended tstop the same way: never."""
    from typer.testing import CliRunner

    from nightlake.cli.app import app

    out = io.StringIO()
    assert run(["--db", str(db), "--type", "bias", "--tstop"], out=out) == 0
    assert out.getvalue().split("\t")[0] == "never"
    listed = CliRunner().invoke(app, ["detregister", "list", "--db", str(db), "--type", "bias"])
    assert listed.exit_code == 0, listed.output
    assert [row["tstop"] for row in read_table(listed.output)] == ["never"]


def test_listing_table_says_never_for_an_open_ended_record_as_detregister_list_does(db):
    status, out, _ = search("--db", db, "--format", "table")
    assert status == 0
    rows = read_table(out)
    _, listed, _ = search("--db", db, "--format", "json")
    by_index = {r["index"]: r for r in json.loads(listed)}
    assert len(rows) == len(ROWS) == len(by_index)
    for row in rows:
        expected = by_index[int(row["index"])]["tstop"] or "never"  # JSON: null when open-ended
        assert row["tstop"] == expected
    assert [r["filename"] for r in rows if r["tstop"] == "never"] == ["/m/bias_c7.fits"]
    from nightlake.cli.detreg_cmds import detregister

    listing = CliRunner().invoke(detregister, ["list", "--db", str(db)])
    assert listing.exit_code == 0, listing.output
    assert {r["filename"]: r["tstop"] for r in read_table(listing.stdout)} == {
        r["filename"]: r["tstop"] for r in rows
    }
