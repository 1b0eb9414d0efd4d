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


#: the options several commands take: defined in cli/options.py only (one home, one help text)
SHARED = {"--lake", "--db", "--format", "-o", "--output", "--as-of", "--lock-timeout", "--param"}


def shared_options_defined_outside(source: str) -> list[str]:
    """The shared spellings a module passes to ``typer.Option`` itself."""
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("typer.Option", "Option"):
            spellings = {a.value for a in node.args if isinstance(a, ast.Constant)}
            found += sorted(spellings & SHARED)
    return found


def test_shared_options_have_one_home():
    assert shared_options_defined_outside('x = typer.Option(None, "--db", help="h")') == ["--db"]
    assert shared_options_defined_outside('x = typer.Option(None, "--limit")') == []
    cli = Path(nightlake.cli.__file__).parent
    elsewhere = {
        path.name: found
        for path in sorted(cli.glob("*.py"))
        if path.name != "options.py" and (found := shared_options_defined_outside(path.read_text()))
    }
    assert elsewhere == {}, "use (or add) the definition in nightlake/cli/options.py"
