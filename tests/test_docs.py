"""Every CLI command and every SQL macro is documented (docs/cli.md, docs/macros.md)."""

from __future__ import annotations

import re

import duckdb
import typer.main

from nightlake.cli.app import app
from nightlake.sql import load_macros


def _commands(group, prefix):
    for name, command in sorted(group.commands.items()):
        if getattr(command, "hidden", False):
            continue
        path = f"{prefix} {name}"
        yield path
        if hasattr(command, "commands"):
            yield from _commands(command, path)


def _headings(text: str) -> set[str]:
    return {m.group(1).strip() for m in re.finditer(r"^#+ `([^`]+)`", text, re.MULTILINE)}


def test_every_cli_command_has_a_section_in_cli_md(repo):
    documented = _headings((repo / "docs" / "cli.md").read_text())
    commands = list(_commands(typer.main.get_command(app), "nightlake"))
    assert commands, "no commands found: the test would pass vacuously"
    missing = [c for c in commands if c not in documented]
    assert not missing, (
        f"undocumented commands (add a '### `CMD`' section to docs/cli.md): {missing}"
    )


def _user_macros(con):
    builtin = duckdb.connect()
    before = {
        r[0]
        for r in builtin.execute(
            "SELECT function_name FROM duckdb_functions() WHERE function_type LIKE '%macro%'"
        ).fetchall()
    }
    rows = con.execute(
        "SELECT function_name, comment FROM duckdb_functions() "
        "WHERE function_type LIKE '%macro%' ORDER BY 1"
    ).fetchall()
    return {name: comment for name, comment in rows if name not in before}


def test_every_macro_has_a_comment_and_a_section_in_macros_md(repo):
    con = duckdb.connect()
    load_macros(con)
    macros = _user_macros(con)
    assert "fwhm_arcsec" in macros
    uncommented = [name for name, comment in macros.items() if not comment]
    assert not uncommented, f"macros without COMMENT ON MACRO: {uncommented}"
    documented = _headings((repo / "docs" / "macros.md").read_text())
    missing = [name for name in macros if name not in documented]
    assert not missing, (
        f"undocumented macros (add a '### `name`' section to docs/macros.md): {missing}"
    )


def test_the_docs_check_notices_a_missing_section(repo):
    # Guard against a vacuous check: a heading set without `sql` must report it missing.
    commands = list(_commands(typer.main.get_command(app), "nightlake"))
    assert "nightlake sql" in commands
    assert "nightlake sql" not in _headings("### `nightlake convert`\n")
