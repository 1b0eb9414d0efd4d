"""explain_detrend / nightlake explain / detsearch --explain: the verdict of every record.

The property test holds the `chosen` row equal to the Python reference, detrend_for and
resolve_detrends on the random databases of test_properties.py, and checks every other
verdict against the raw records: a rejected record must really be rejected for that reason.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import read_table

from nightlake.detrends.rules import DETREND_TYPES, MODES, Image, Resolver

from .conftest import FILTERS, OPEN, T0, VR, record, utc, write_detreg, write_images
from .test_properties import images, records

FILTERED = ("flat", "fringe")


def _con(tmp_path, recs, filters=None):
    from nightlake.detrends.detreg import read_db
    from nightlake.detrends.explain import db_connection

    db = read_db(write_detreg(tmp_path / "detrend.db", recs, filters))
    return db, db_connection(db)


def _explain(con, kind, img, mode="exact", **kw):
    from nightlake.detrends.explain import explain

    return explain(con, kind, img, mode, **kw).to_pylist()


def _check_verdicts(rows, rec, filters, kind, img, mode, choice):
    """Every verdict agrees with the raw record it is about."""
    t = img.time_s
    names = {code: name for code, name in filters.items()}
    by_index = {r["record_index"]: r for r in rows}
    chosen = [r for r in rows if r["verdict"] == "chosen"]
    assert len(chosen) == (0 if choice is None else 1)
    if chosen:
        assert chosen[0]["record_index"] == choice.index
        assert chosen[0]["rule"] == choice.rule
        assert chosen[0]["scale"] == choice.scale
        assert rows[0] is chosen[0], "the chosen record comes first"
    for r in rows:
        x = rec[r["record_index"]]
        start, stop, treg = int(x["tstart"]), int(x["tstop"]), int(x["treg"])
        covers = start <= t < stop
        verdict = r["verdict"]
        if verdict == "empty range":
            assert stop <= start
            continue
        assert stop > start
        name = names.get(int(x["filter"]))
        matches = name is not None and name in (img.filter, img.band)
        if verdict == "wrong filter":
            assert kind in FILTERED and not matches
            continue
        assert kind not in FILTERED or matches
        if verdict == "no image exptime":
            assert kind == "dark" and img.exptime is None
        elif verdict == "not yet valid":
            assert start > t and r["delta_s"] > 0
        elif verdict == "expired":
            assert stop <= t and r["delta_s"] >= 0
        elif verdict == "superseded":
            winner = rec[r["beaten_by"]]
            assert covers and int(winner["tstart"]) <= t < int(winner["tstop"])
            assert int(winner["filter"]) == int(x["filter"]) or kind != "dark"
            assert (int(winner["treg"]), r["beaten_by"]) > (treg, r["record_index"])
        elif verdict == "farther exptime":
            assert kind == "dark" and (covers or (mode == "recent" and stop <= t))
            best = by_index[r["beaten_by"]]["dark_exptime"]
            mine = r["dark_exptime"]
            assert (abs(mine - img.exptime), -mine) > (abs(best - img.exptime), -best)
        else:
            assert verdict == "chosen"


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(records(), st.lists(images(), min_size=1, max_size=3))
def test_explain_agrees_with_the_reference_and_the_other_formulations(recs, imgs):
    import tempfile

    from nightlake.detrends.detreg import read_db
    from nightlake.detrends.explain import db_connection

    with tempfile.TemporaryDirectory(prefix="nl-explain-") as tmp:
        db = read_db(write_detreg(Path(tmp) / "detrend.db", recs))
    con = db_connection(db)
    resolver = Resolver(db.records, db.filters)
    import pyarrow as pa

    rows = [dict(img, visit=i, obs_time=utc(img["time_us"] / 1e6)) for i, img in enumerate(imgs)]
    con.register("imgs_arrow", pa.Table.from_pylist(rows))
    con.execute(
        "CREATE TEMP TABLE imgs AS SELECT visit, detector, filter, band, exposureTime, "
        "make_timestamp(time_us) AS obs_time FROM imgs_arrow"
    )
    for kind in DETREND_TYPES:
        for mode in MODES:
            batch = dict(
                con.execute(
                    "SELECT visit, detrend_index FROM resolve_detrends($t, mode := $m, "
                    "source := 'imgs')",
                    {"t": kind, "m": mode},
                ).fetchall()
            )
            for i, raw in enumerate(imgs):
                img = Image(
                    raw["detector"], raw["time_us"], raw["filter"], raw["band"], raw["exposureTime"]
                )
                choice = resolver.choose(kind, img, mode)
                out = _explain(con, kind, img, mode)
                expected = {
                    j
                    for j, x in enumerate(db.records)
                    if int(x["ccd"]) == img.ccd and int(x["type"]) == DETREND_TYPES.index(kind) + 1
                }
                assert sorted(r["record_index"] for r in out) == sorted(expected)
                _check_verdicts(out, db.records, db.filters, kind, img, mode, choice)
                chosen = next((r["record_index"] for r in out if r["verdict"] == "chosen"), None)
                assert chosen == batch[i], (kind, mode, "resolve_detrends")
                single = con.execute(
                    "SELECT detrend_for($t, $c, $f, make_timestamp($us), mode := $m, "
                    "exptime := $e, band := $b).record_index",
                    {
                        "t": kind,
                        "c": img.ccd,
                        "f": img.filter,
                        "us": img.time_us,
                        "m": mode,
                        "e": img.exptime,
                        "b": img.band,
                    },
                ).fetchall()[0][0]
                assert chosen == single, (kind, mode, "detrend_for")


# -- hand-made cases: one per verdict, with the reason a user reads --------------------------

FLATS = [
    record("flat", 5, 1, -100, 100, 10, "chosen"),  # 0
    record("flat", 5, 2, -100, 100, 5, "older"),  # 1: same range, registered earlier
    record("flat", 5, 3, -100, 100, 20, "g"),  # 2: other filter
    record("flat", 5, 1, -500, -200, 30, "ended"),  # 3: ended 200 s before
    record("flat", 5, 1, 300, 900, 30, "future"),  # 4: starts 300 s after
    record("flat", 5, 1, 50, 50, 40, "empty"),  # 5
    record("flat", 5, 1, 60, 40, 40, "inverted"),  # 6
    record("flat", 6, 1, -100, 100, 10, "ccd6"),  # 7: another CCD
    record("flat", 5, 9, -100, 100, 50, "unknown-code"),  # 8: code missing from the table
    record("flat", 5, 1, -100, 100, 10, "same-treg-earlier"),  # 9 … ties with 0? no: later
]


def _vr(ccd=5, dt=0):
    return Image(ccd, (T0 + dt) * 1_000_000, VR, "VR", 60.0, "img.fits")


def test_each_verdict_with_its_reason(tmp_path):
    _, con = _con(tmp_path, FLATS)
    rows = {r["record_index"]: r for r in _explain(con, "flat", _vr())}
    assert 7 not in rows
    verdicts = {i: r["verdict"] for i, r in rows.items()}
    assert verdicts == {
        9: "chosen",
        0: "superseded",
        1: "superseded",
        2: "wrong filter",
        3: "expired",
        4: "not yet valid",
        5: "empty range",
        6: "empty range",
        8: "wrong filter",
    }
    assert rows[0]["reason"] == (
        "superseded by record 9, which covers too and was registered at the same time, "
        "later in the file"
    )
    assert rows[1]["reason"] == "superseded by record 9, which covers too and was registered later"
    assert rows[0]["beaten_by"] == rows[1]["beaten_by"] == 9
    assert "filter g DECam SDSS" in rows[2]["reason"] and VR in rows[2]["reason"]
    assert rows[8]["reason"] == "filter code 9 is not in the database's filter table"
    assert rows[3]["reason"] == "ended 00:03:20 before the image" and rows[3]["delta_s"] == 200
    assert rows[4]["reason"] == "starts 00:05:00 after the image" and rows[4]["delta_s"] == 300
    assert rows[5]["reason"] == "empty range: tstop = tstart"
    assert rows[6]["reason"] == "inverted range: tstop is before tstart"
    order = [r["record_index"] for r in _explain(con, "flat", _vr())]
    assert order[:3] == [9, 0, 1] and order.index(3) < order.index(4) < order.index(2)


def test_recent_mode_names_the_fallback_and_the_older_ended_records(tmp_path):
    recs = [
        record("bias", 5, -1, -900, -600, 1, "old"),  # 0: ended 600 s before
        record("bias", 5, -1, -400, -100, 1, "newest-ended"),  # 1: ended 100 s before
        record("bias", 5, -1, 100, 200, 1, "future"),  # 2
    ]
    _, con = _con(tmp_path, recs)
    exact = {r["record_index"]: r["verdict"] for r in _explain(con, "bias", _vr())}
    assert exact == {0: "expired", 1: "expired", 2: "not yet valid"}
    rows = _explain(con, "bias", _vr(), "recent")
    assert [r["record_index"] for r in rows] == [1, 0, 2]
    assert rows[0]["verdict"] == "chosen" and rows[0]["rule"] == "recent"
    assert rows[0]["reason"].startswith("recent fallback: nothing covers the image time; ended")
    assert rows[1]["verdict"] == "expired" and rows[1]["beaten_by"] == 1
    assert "record 1 ended later" in rows[1]["reason"]


def test_darks_name_the_farther_exposure_time_and_its_scale(tmp_path):
    recs = [
        record("dark", 5, 60, -100, 100, 1, "d60"),
        record("dark", 5, 300, -100, 100, 1, "d300"),
        record("dark", 5, 600, -100, 100, 1, "d600"),
    ]
    _, con = _con(tmp_path, recs)
    img = Image(5, T0 * 1_000_000, None, None, 180.0, "img.fits")
    rows = _explain(con, "dark", img)
    assert [(r["record_index"], r["verdict"]) for r in rows] == [
        (1, "chosen"),
        (0, "farther exptime"),
        (2, "farther exptime"),
    ]
    assert rows[0]["scale"] == pytest.approx(0.6)
    assert rows[1]["reason"] == (
        "dark of 60 s; record 1 (300 s) is nearer to the image's 180.0 s; its scale would be 3.0"
    )
    no_exptime = _explain(con, "dark", Image(5, T0 * 1_000_000, None, None, None))
    assert {r["verdict"] for r in no_exptime} == {"no image exptime"}


def test_all_explains_every_ccd_as_if_the_image_were_on_it(tmp_path):
    _, con = _con(tmp_path, FLATS)
    rows = _explain(con, "flat", _vr(), all_ccds=True)
    chosen = {r["ccd"]: r["record_index"] for r in rows if r["verdict"] == "chosen"}
    assert chosen == {5: 9, 6: 7}


# -- the commands ----------------------------------------------------------------------------


def _fits(path, ccd=5, filt=VR, exptime=60.0, dt=0):
    from datetime import datetime, timedelta

    from astropy.io import fits

    header = fits.Header()
    header["CCDNUM"] = ccd
    header["FILTER"] = filt
    header["EXPTIME"] = exptime
    header["DATE-OBS"] = (datetime(1970, 1, 1) + timedelta(seconds=T0 + dt)).isoformat()
    fits.PrimaryHDU(header=header).writeto(path)
    return path


def _nightlake(*args, env=None):
    return subprocess.run(
        [str(Path(sys.executable).parent / "nightlake"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_nightlake_explain_an_image_file_as_a_table_and_as_json(tmp_path):
    from typer.testing import CliRunner

    from nightlake.cli.app import app

    db = write_detreg(tmp_path / "detrend.db", FLATS)
    image = _fits(tmp_path / "img.fits")
    result = CliRunner().invoke(
        app, ["explain", "--image", str(image), "--type", "flat", "--db", str(db)]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{image}: flat for ccd 5, filter {VR} at 2019-04-02T05:13:00Z (exact mode)"
    first = read_table("\n".join(lines[1:]))[0]
    assert (first["ccd"], first["record"], first["verdict"]) == ("5", "#9", "chosen")
    result = CliRunner().invoke(
        app,
        [
            "explain",
            "--image",
            str(image),
            "6",
            "--type",
            "flat",
            "--db",
            str(db),
            "--format",
            "json",
        ],
    )
    answer = json.loads(result.output)
    assert answer["ccd"] == 6 and answer["records"][0]["filename"] == "/m/ccd6.fits"


def test_nightlake_explain_a_lake_image_and_explicit_values(tmp_path):
    from nightlake import Lake
    from nightlake.detrends.sync import sync

    db = write_detreg(tmp_path / "detrend.db", FLATS)
    write_images(
        tmp_path / "lake",
        [dict(visit=7, detector=5, filter=VR, band="VR", exposureTime=60.0, obs_time=utc(T0))],
    )
    sync(Lake(tmp_path / "lake"), db)
    done = _nightlake(
        "explain",
        "--lake",
        tmp_path / "lake",
        "--visit",
        7,
        "--detector",
        5,
        "--type",
        "flat",
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["records"][0]["record_index"] == 9
    done = _nightlake(
        "explain",
        "--db",
        db,
        "--ccd",
        5,
        "--filter",
        "g DECam SDSS c0001 4720.0 1520.0",
        "--time",
        "2019-04-02T05:13:00",
        "--type",
        "flat",
    )
    assert done.returncode == 0, done.stderr
    first = read_table("\n".join(done.stdout.splitlines()[1:]))[0]
    assert (first["ccd"], first["record"], first["verdict"]) == ("5", "#2", "chosen")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--visit", "99", "--detector", "5"], "visit 99 detector 5: no such image in the lake"),
        (["--visit", "7"], "give --visit and --detector together"),
        (["--ccd", "5"], "give --image FILE, --visit V --detector D, or --time"),
        (["--ccd", "5", "--time", "2019-04-02", "--mode", "later"], "--mode 'later'"),
        (["--time", "2019-04-02"], "no CCD; give --ccd N"),
        (["--ccd", "5", "--time", "yesterday"], "not a time: 'yesterday'"),
    ],
)
def test_nightlake_explain_bad_input_is_one_line(tmp_path, args, message):
    from nightlake import Lake
    from nightlake.detrends.sync import sync

    db = write_detreg(tmp_path / "detrend.db", FLATS)
    write_images(
        tmp_path / "lake",
        [dict(visit=7, detector=5, filter=VR, band="VR", exposureTime=60.0, obs_time=utc(T0))],
    )
    sync(Lake(tmp_path / "lake"), db)
    done = _nightlake("explain", "--lake", tmp_path / "lake", "--type", "flat", *args)
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("spelling", [["--explain"], ["-explain"]])
def test_detsearch_explain(tmp_path, spelling):
    from nightlake.cli.detsearch import run

    db = write_detreg(tmp_path / "detrend.db", FLATS)
    image = _fits(tmp_path / "img.fits")
    out = io.StringIO()
    status = run(["-db", str(db), "-image", str(image), "-type", "flat", *spelling], out=out)
    assert status == 0
    rows = read_table("\n".join(out.getvalue().splitlines()[1:]))
    assert [(r["ccd"], r["record"], r["verdict"]) for r in rows[:1]] == [("5", "#9", "chosen")]
    assert any(r["reason"].startswith("superseded by record 9") for r in rows)
    out = io.StringIO()
    run(
        [
            "--db",
            str(db),
            "--image",
            str(image),
            str(image),
            "--type",
            "flat",
            "--explain",
            "--format",
            "json",
        ],
        out=out,
    )
    answers = json.loads(out.getvalue())
    assert [a["records"][0]["record_index"] for a in answers] == [9, 9]


def test_detsearch_explain_keeps_its_fast_start():
    """--help and a plain search must not import duckdb: --explain imports it lazily."""
    code = "import sys, nightlake.cli.detsearch; assert 'duckdb' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


_ = (FILTERS, OPEN)


def test_a_dark_of_0_s_has_no_scale_in_its_reason_either(tmp_path):
    """The reason's "scale would be" is detrend_scale, as the scale column is: no scale for a
    0 s dark (the division gave inf there while the column said NULL)."""
    recs = [
        record("dark", 5, 0, -100, 100, 1, "d0"),
        record("dark", 5, 60, -100, 100, 1, "d60"),
    ]
    _, con = _con(tmp_path, recs)
    rows = _explain(con, "dark", Image(5, T0 * 1_000_000, None, None, 50.0, "img.fits"))
    assert [(r["record_index"], r["verdict"]) for r in rows] == [
        (1, "chosen"),
        (0, "farther exptime"),
    ]
    assert rows[1]["scale"] is None
    assert rows[1]["reason"] == (
        "dark of 0 s; record 1 (60 s) is nearer to the image's 50.0 s; "
        "its scale would be undefined (a dark of 0 s)"
    )
