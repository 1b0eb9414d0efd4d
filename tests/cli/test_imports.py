"""Fast CLI start: importing the CLI loads no heavy module, and each command loads only
what its work needs (``nightlake sql`` prints table/json/jsonl/csv/tsv without pyarrow,
numpy or pydantic: DuckDB's rows, DuckDB's CSV writer, typer without its pydantic adapters)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PREVIOUS_LAKE = Path(__file__).parents[2] / "data" / "fixtures" / "previous" / "lake"
HEAVY = (
    "pyarrow",
    "numpy",
    "astropy",
    "rich",
    "matplotlib",
    "duckdb",
    "filelock",
    "pydantic",
    "starlette",
    "uvicorn",
    "jinja2",
)


def loaded_after(code: str) -> list[str]:
    """The heavy modules loaded by ``code`` in a fresh interpreter."""
    script = (
        "import sys\n"
        f"{code}\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    return eval(done.stderr.strip().splitlines()[-1])


def test_importing_the_cli_loads_no_heavy_module():
    assert loaded_after("import nightlake.cli") == []


def _run(argv: list[str]) -> str:
    return (
        "from nightlake.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
    )


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("cli-imports") / "lake"
    shutil.copytree(PREVIOUS_LAKE, path)
    return str(path)


@pytest.mark.parametrize("fmt", ["table", "json", "jsonl", "csv", "tsv"])
def test_sql_prints_text_without_pyarrow(lake, fmt):
    argv = ["sql", "--lake", lake, "--format", fmt, "select count(*) from images"]
    assert loaded_after(_run(argv)) == ["duckdb"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["sql", "--help"],
        ["detregister", "--help"],
        ["convert", "--help"],
        ["export", "--help"],
        ["stats", "--help"],
        ["images-at", "--help"],
        ["explain", "--help"],
        ["audit", "--help"],
        ["sync", "--help"],
        ["resolve", "--help"],
        ["serve", "--help"],
    ],
)
def test_help_of_every_command_loads_no_heavy_module(argv):
    assert loaded_after(_run(argv)) == []


def test_macros_loads_only_duckdb():
    assert loaded_after(_run(["macros", "--format", "json"])) == ["duckdb"]
