"""``nightlake convert`` goes on past any bad input: long fields, odd files, surprises."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"
GOOD = FIXTURES / "collections" / "20190401_A0a.collection"
GOOD_PARTITION = Path("images/target=A0a/night=20190401/20190401_A0a.parquet")

LONG = """# %ECSV 1.0
# ---
# datatype:
# - {name: visit, datatype: int64}
# - {name: mjd, datatype: float64}
# - {name: wcs, datatype: string}
# schema: astropy-2.0
visit mjd wcs
"""


def _errors(result) -> list[str]:
    return [ln for ln in result.stderr.splitlines() if "error:" in ln]


def _one_error_per_bad_input(result, lake: Path, *expected: str) -> None:
    """Exit 1, one error line for each bad input (in any order), no traceback, and the good
    input converted."""
    assert result.exit_code == 1, result.output
    errors = _errors(result)
    assert len(errors) == len(expected), errors
    for want in expected:
        assert any(want in e for e in errors), (want, errors)
    assert "Traceback" not in result.output
    assert (lake / GOOD_PARTITION).exists()


def test_a_long_field_converts_and_a_bad_one_beside_it_fails_alone(cli, tmp_path):
    long_ok = tmp_path / "20190402_L1a.collection"
    long_ok.write_text(LONG + f'1 58575.2 "{"w" * 200_000}"\n2 58575.3 short\n')
    long_bad = tmp_path / "20190402_L2a.collection"
    long_bad.write_text(LONG + f'1 58575.2 "{"w" * 200_000}"\n2 oops short\n')
    lake = tmp_path / "lake"
    result = cli("convert", long_bad, long_ok, GOOD, "--lake", lake)
    _one_error_per_bad_input(result, lake, f"{long_bad}:10: column 'mjd': value 'oops'")
    assert (lake / "images/target=L1a/night=20190402/20190402_L1a.parquet").exists()


def test_an_error_no_check_foresaw_fails_its_file_only(cli, tmp_path):
    """A packed table whose shared value pyarrow cannot hold (a list of mixed types) raises
    pyarrow's own error deep in the reader: still one line, naming the file."""
    packed = FIXTURES / "packed" / "20190402_A0b.collection"
    text = packed.read_text()
    assert "shared_cols:" in text
    bad = tmp_path / "20190402_A0b.collection"
    bad.write_text(
        text.replace(
            "# - shared_cols: [", "# - surprise: [1, abc]\n# - shared_cols: [surprise, ", 1
        )
    )
    lake = tmp_path / "lake"
    result = cli("convert", bad, GOOD, "--lake", lake)
    _one_error_per_bad_input(result, lake, f"{bad}: cannot convert (")


def _odd_inputs(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A directory of odd entries named like collections, and what each one's error says."""
    odd = tmp_path / "odd"
    odd.mkdir()
    os.symlink("20190403_Y1a.collection", odd / "20190403_Y1a.collection")  # to itself
    os.symlink("20190404_Y1b.collection", odd / "20190404_Y1c.collection")
    os.symlink("20190404_Y1c.collection", odd / "20190404_Y1b.collection")  # a loop of two
    os.mkfifo(odd / "20190405_Y1d.collection")
    os.symlink("/dev/null", odd / "20190406_Y1e.collection")
    os.symlink("nowhere.collection", odd / "20190407_Y1f.collection")
    return odd, {
        "20190403_Y1a.collection": "symlink loop",
        "20190404_Y1b.collection": "symlink loop",
        "20190404_Y1c.collection": "symlink loop",
        "20190405_Y1d.collection": "is a FIFO, not a regular file",
        "20190406_Y1e.collection": "is a device, not a regular file",
        "20190407_Y1f.collection": "broken symlink",
    }


def _convert_in_a_subprocess(*args) -> subprocess.CompletedProcess:
    # a subprocess: a FIFO opened for reading would block forever; the timeout only turns
    # that hang into a failure (a run takes a few seconds)
    return subprocess.run(
        [sys.executable, "-m", "nightlake.cli", "convert", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NIGHTLAKE_DEBUG": ""},
    )


@pytest.mark.parametrize("how", ["directory", "each named", "glob"])
def test_loops_fifos_devices_and_broken_links_fail_one_line_each(cli, tmp_path, how):
    odd, expected = _odd_inputs(tmp_path)
    lake = tmp_path / "lake"
    inputs = {
        "directory": [odd],
        "each named": sorted(odd.iterdir()),
        "glob": [f"{odd}/*.collection"],
    }[how]
    if how == "each named":  # a FIFO named on the command line was opened (and waited on)
        result = _convert_in_a_subprocess(*inputs, GOOD, "--lake", lake)
    else:
        result = cli("convert", *inputs, GOOD, "--lake", lake)
    assert (result.returncode if how == "each named" else result.exit_code) == 1, result.stderr
    errors = _errors(result)
    assert len(errors) == len(expected), errors
    for name, why in expected.items():
        assert any(f"{odd / name}: {why}" in e for e in errors), (name, errors)
    assert "Traceback" not in result.stderr
    assert (lake / GOOD_PARTITION).exists()
    assert "1 partition(s) written" in result.stdout


def test_a_fifo_is_never_opened_for_reading(tmp_path):
    """Not even when it turns up where a recorded source was (read as a sibling)."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(GOOD, src / GOOD.name)
    lake = tmp_path / "lake"
    assert _convert_in_a_subprocess(src, "--lake", lake).returncode == 0
    (src / GOOD.name).unlink()
    os.mkfifo(src / GOOD.name)
    result = _convert_in_a_subprocess(src / GOOD.name, "--lake", lake)
    assert result.returncode == 1
    (error,) = _errors(result)
    assert f"{src / GOOD.name}: is a FIFO, not a regular file" in error
