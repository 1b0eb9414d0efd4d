"""Every CLI module can be the first one imported (the console scripts each start from one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import nightlake.cli

MODULES = sorted(p.stem for p in Path(nightlake.cli.__file__).parent.glob("*.py"))


@pytest.mark.parametrize("module", [m for m in MODULES if m not in ("__init__", "__main__")])
def test_imported_first_in_a_fresh_interpreter(module):
    code = (
        f"import nightlake.cli.{module}, nightlake.cli.app as a\n"
        "names = {c.name or c.callback.__name__ for c in a.app.registered_commands}\n"
        "assert {'sql', 'images-at', 'detsearch', 'history', 'explain'} <= names, names\n"
    )
    if module == "detsearch":  # the fast script must not load the typer app by itself
        code = "import sys, nightlake.cli.detsearch\nassert 'typer' not in sys.modules\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
