"""``nightlake convert`` as a user runs it: summaries, warnings, one-line errors, the lake lock."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"
COLLECTIONS = FIXTURES / "collections"

BAD_ROW = textwrap.dedent("""\
    # %ECSV 1.0
    # ---
    # datatype:
    # - {name: visit, datatype: int64}
    # - {name: mjd, datatype: float64}
    # schema: astropy-2.0
    visit mjd
    1 58575.2
    2 oops
    """)


def _errors(result) -> list[str]:
    return [ln for ln in result.stderr.splitlines() if "error:" in ln]


def test_convert_prints_a_summary_and_one_rename_warning(cli, tmp_path):
    result = cli("convert", COLLECTIONS, "--lake", tmp_path / "lake")
    assert result.exit_code == 0, result.output
    assert "partition(s) written" in result.stdout
    warnings = [ln for ln in result.stderr.splitlines() if "warning:" in ln]
    assert len(warnings) == 1 and "AIRMASS -> AIRMASS_1" in warnings[0]
    again = cli("convert", COLLECTIONS, "--lake", tmp_path / "lake")
    assert again.exit_code == 0 and "0 partition(s) written" in again.stdout


def test_bad_inputs_are_reported_and_the_good_ones_converted(cli, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(COLLECTIONS, src)
    (src / "20190499_Z9z.collection").write_text(BAD_ROW)
    (src / "20190498_Z9y.collection").write_text("just text\n")
    result = cli("convert", src, tmp_path / "missing.collection", "--lake", tmp_path / "lake")
    assert result.exit_code == 1
    errors = _errors(result)
    assert len(errors) == 3
    assert any(
        "20190499_Z9z.collection:9: column 'mjd': value 'oops' is not a valid float64" in e
        for e in errors
    )
    assert any("20190498_Z9y.collection:1: not an ECSV file" in e for e in errors)
    assert any("missing.collection: no such file or directory" in e for e in errors)
    assert "Traceback" not in result.output
    lake = tmp_path / "lake" / "images"
    assert not (lake / "target=Z9z").exists() and not (lake / "target=Z9y").exists()
    assert len(list(lake.rglob("*.parquet"))) == len(list(COLLECTIONS.glob("*.collection")))
    assert not list(lake.rglob("*.tmp"))


def test_file_without_target_or_night_asks_for_the_options(cli, tmp_path):
    path = tmp_path / "loose.ecsv"
    path.write_text(BAD_ROW.replace("2 oops", "2 58575.3"))
    result = cli("convert", path, "--lake", tmp_path / "lake")
    assert result.exit_code == 1
    (error,) = _errors(result)
    assert "loose.ecsv" in error and "--target --night" in error
    ok = cli("convert", path, "--lake", tmp_path / "lake", "--target", "A0a", "--night", "20190402")
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "lake/images/target=A0a/night=20190402/20190402_A0a.parquet").exists()


def test_lake_not_writable(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = cli("convert", COLLECTIONS, "--lake", blocker / "lake")
    assert result.exit_code == 1
    (error,) = _errors(result)
    assert str(blocker / "lake") in error and "lake directory" in error


def test_bad_option_values_are_one_line_usage_errors(cli, tmp_path):
    result = cli("convert", COLLECTIONS, "--lake", tmp_path / "lake", "--time-scale", "tt")
    assert result.exit_code == 2 and "--time-scale must be one of tai, utc" in result.stderr
    result = cli("convert", COLLECTIONS, "--lake", tmp_path / "lake", "--partition-by", "night")
    assert result.exit_code == 2 and "--partition-by must be" in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    env = {**os.environ, "NIGHTLAKE_DEBUG": ""}
    cmd = [
        sys.executable,
        "-m",
        "nightlake.cli",
        "--debug",
        "convert",
        str(tmp_path / "nope.collection"),
        "--lake",
        str(tmp_path / "lake"),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert result.returncode != 0 and "Traceback" in result.stderr
    plain = subprocess.run(
        [c for c in cmd if c != "--debug"], capture_output=True, text=True, env=env
    )
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines()[-1].startswith("nightlake: error:")


HOLD_LOCK = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1]); lock.acquire()
open(sys.argv[2], "w").close()
sys.stdin.read()  # hold until the test closes our stdin
"""


def test_a_second_convert_waits_on_the_lake_lock_then_times_out(cli, tmp_path):
    lake = tmp_path / "lake"
    lake.mkdir()
    ready = tmp_path / "ready"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lake / ".nightlake.lock"), str(ready)],
        stdin=subprocess.PIPE,
    )
    try:
        while not ready.exists():
            assert holder.poll() is None, "lock holder died"
        result = cli("convert", COLLECTIONS, "--lake", lake, "--lock-timeout", "0.3")
        assert result.exit_code == 1
        assert "lake locked by another process" in result.stderr
        assert str(lake / ".nightlake.lock") in result.stderr
        assert not list(lake.rglob("*.parquet"))
    finally:
        holder.stdin.close()
        holder.wait()
    assert cli("convert", COLLECTIONS, "--lake", lake, "--lock-timeout", "5").exit_code == 0


def test_leftover_temp_files_are_invisible_and_cleaned(cli, tmp_path):
    lake = tmp_path / "lake"
    assert cli("convert", COLLECTIONS, "--lake", lake).exit_code == 0
    part = next((lake / "images").rglob("*.parquet"))
    junk = part.with_name(f".{part.name}.999.tmp")
    junk.write_bytes(b"half a parquet file")  # what a crashed writer leaves
    from nightlake import Lake

    n = Lake(lake).sql("SELECT count(*) AS n FROM images").column("n")[0].as_py()
    assert n > 0
    assert cli("convert", COLLECTIONS, "--lake", lake, "--force").exit_code == 0
    assert not junk.exists()


def test_help_lists_convert_and_sql(cli):
    result = cli("--help")
    assert result.exit_code == 0
    assert "convert" in result.stdout and "sql" in result.stdout


@pytest.mark.parametrize("args", [["--version"]])
def test_version(cli, args):
    result = cli(*args)
    assert result.exit_code == 0 and result.stdout.startswith("nightlake ")


def test_a_reader_that_leaves_early_is_not_an_error(tmp_path):
    # `nightlake convert … | head -c 0`: stdout's reader is gone before the summary is written
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nightlake.cli",
            "convert",
            str(COLLECTIONS),
            "--lake",
            str(tmp_path / "lake"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait() == 0
    assert "error" not in stderr
    assert len(list((tmp_path / "lake" / "images").rglob("*.parquet"))) == len(
        list(COLLECTIONS.glob("*.collection"))
    )


POOL_OF_A_CONVERT = textwrap.dedent("""\
    import sys
    import pyarrow as pa
    from nightlake.cli import main
    sys.argv = ["nightlake", "convert", sys.argv[1], "--lake", sys.argv[2]]
    try:
        main()
    except SystemExit as exc:
        assert not exc.code, exc.code
    print(pa.default_memory_pool().backend_name)
    """)


@pytest.mark.parametrize("chosen", [None, "system"])
def test_convert_runs_on_jemalloc_unless_the_user_chose_a_pool(tmp_path, chosen):
    import pyarrow as pa

    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if chosen:
        env["ARROW_DEFAULT_MEMORY_POOL"] = chosen
    try:
        pa.jemalloc_memory_pool()
        fast = "jemalloc"
    except NotImplementedError:  # a pyarrow built without it keeps its default
        fast = pa.default_memory_pool().backend_name
    out = subprocess.run(
        [sys.executable, "-c", POOL_OF_A_CONVERT, str(COLLECTIONS), str(tmp_path / "lake")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == (chosen or fast)
    assert len(list((tmp_path / "lake" / "images").rglob("*.parquet"))) == len(
        list(COLLECTIONS.glob("*.collection"))
    )


KEY_NAMED = textwrap.dedent("""\
    # %ECSV 1.0
    # ---
    # datatype:
    # - {name: fieldname, datatype: string}
    # - {name: night, datatype: int64}
    # - {name: COLUMN, datatype: string}
    # schema: astropy-2.0
    fieldname night COLUMN
    A0a 20190402 VALUE
    A0b 20190402 VALUE
    """)


@pytest.mark.parametrize(
    "column, values, needle",
    [
        ("target", ("A0a", "A0c"), "column 'target': holds values other than the rows' partition"),
        ("target", ("A0a", ""), "column 'target': holds values other than the rows' partition"),
        ("year", ("2019", "2019"), "column 'year': the name of a compacted lake's partition key"),
    ],
)
def test_a_column_that_the_lake_would_hide_is_refused(tmp_path, column, values, needle):
    """A real process: one line naming the file, the column and the fix; nothing written."""
    path = tmp_path / "keys.ecsv"
    text = KEY_NAMED.replace("COLUMN", column).replace("VALUE", values[0], 1)
    path.write_text(text.replace("VALUE", values[1] or '""', 1))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nightlake.cli",
            "convert",
            str(path),
            "--lake",
            str(tmp_path / "l"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("nightlake: error:")]
    assert line.startswith(f"nightlake: error: {path}: {needle}") and "rename" in line
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "l").rglob("*.parquet"))


def test_a_target_column_holding_the_rows_target_is_kept(cli, tmp_path):
    from nightlake import Lake

    path = tmp_path / "keys.ecsv"
    path.write_text(
        KEY_NAMED.replace("COLUMN", "target").replace("VALUE", "A0a", 1).replace("VALUE", "A0b")
    )
    assert cli("convert", path, "--lake", tmp_path / "lake").exit_code == 0
    rows = Lake(tmp_path / "lake").sql("SELECT fieldname, target FROM images ORDER BY 1")
    assert rows.to_pylist() == [
        {"fieldname": "A0a", "target": "A0a"},
        {"fieldname": "A0b", "target": "A0b"},
    ]
