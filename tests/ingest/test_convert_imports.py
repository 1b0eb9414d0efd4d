"""``nightlake convert`` does not import astropy: obs_time comes from ERFA alone and DEEP
headers carry no astropy YAML tags (the import would be most of a small convert's time).
Nor pydantic (typer's option converters, see nightlake.cli.coercion)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"

# runs the CLI as the console script does, then fails (99) if astropy or pydantic was imported
RUN_CLI_WITHOUT_ASTROPY = """
import sys
from nightlake.cli import main
try:
    main(sys.argv[1:])
    status = 0
except SystemExit as exc:
    status = exc.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("astropy", "pydantic"))
if loaded:
    print("imported:", ", ".join(loaded[:5]), file=sys.stderr)
    sys.exit(99)
sys.exit(status)
"""


@pytest.mark.parametrize(
    ("inputs", "options"),
    [
        (["joined/joined.collection"], []),
        (["collections"], ["--time-scale", "utc"]),
        (["sharded"], ["--partition-by", "target,night,detector"]),
        (["packed/20190402_A0b.collection"], []),
    ],
)
def test_convert_process_never_imports_astropy(tmp_path, inputs, options):
    lake = tmp_path / "lake"
    argv = ["convert", *(str(FIXTURES / i) for i in inputs), "--lake", str(lake), *options]
    proc = subprocess.run(
        [sys.executable, "-c", RUN_CLI_WITHOUT_ASTROPY, *argv], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    parts = sorted((lake / "images").rglob("*.parquet"))
    assert parts and all("obs_time" in pq.read_schema(p).names for p in parts)
