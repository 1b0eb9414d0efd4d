"""Every CLI command and every SQL macro is documented (docs/cli.md, docs/macros.md).

docs/cli.md is checked against each command's ``--help``, the one text both click and argparse
(``detsearch``) produce: under the command's heading, a paragraph ``Options: `--a`, `-b` …``
names every option spelling its --help shows (``--help`` aside) and ``Arguments: `NAME` …``
every positional argument, and neither names one that --help does not show.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest
import typer
import typer.main
from typer.testing import CliRunner

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


# ---------------------------------------------------------------------------------------------
# docs/cli.md against --help

_SECTION = re.compile(r"^(\S[^:]*):\s*$")  # "Options:", "positional arguments:", "Commands:"
_SPELLING = re.compile(r"(?:^|, | / )(--?[A-Za-z][\w-]*)")
_DOC_OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
_HELP_SPELLINGS = {"--help", "-h"}


@dataclass
class Help:
    """What one command's --help shows."""

    options: set[str] = field(default_factory=set)
    arguments: set[str] = field(default_factory=set)
    commands: list[str] = field(default_factory=list)


def parse_help(text: str) -> Help:
    """Options, positional arguments and subcommands of a click/typer or argparse --help.

    Rows of a section sit two spaces in; wrapped descriptions sit deeper, so a ``--x`` in a
    description is never taken for an option of the command.
    """
    found, section = Help(), ""
    for line in text.splitlines():
        heading = _SECTION.match(line)
        if heading:
            section = heading.group(1).lower()
            continue
        if not line.startswith("  ") or line.startswith("   "):
            continue
        first_column = re.split(r"\s{2,}", line.strip())[0]
        if "option" in section:
            found.options |= set(_SPELLING.findall(first_column)) - _HELP_SPELLINGS
        elif "argument" in section:
            found.arguments.add(_argument_name(first_column.split()[0]))
        elif "command" in section:
            found.commands.append(first_column.split()[0])
    return found


def _argument_name(token: str) -> str:
    return re.sub(r"[^\w-]", "", token.replace("...", "").replace("…", "")).lower()


def doc_sections(text: str) -> dict[str, str]:
    """Each ``### `command` `` heading of docs/cli.md with the text up to the next heading."""
    sections, name, lines = {}, None, []
    for line in text.splitlines():
        heading = re.match(r"^#+ (?:`([^`]+)`)?", line)
        if heading:
            if name:
                sections[name] = "\n".join(lines)
            name, lines = (heading.group(1) or "").strip() or None, []
        else:
            lines.append(line)
    if name:
        sections[name] = "\n".join(lines)
    return sections


def _paragraph(section: str, label: str) -> list[str]:
    """The backticked items of the paragraph starting ``label:`` (it ends at a blank line)."""
    items = []
    for paragraph in re.split(r"\n\s*\n", section):
        if paragraph.lstrip().startswith(f"{label}:"):
            items += re.findall(r"`([^`]+)`", paragraph)
    return items


def documented(section: str) -> Help:
    options = {o for item in _paragraph(section, "Options") for o in _DOC_OPTION.findall(item)}
    arguments = {_argument_name(item.split()[0]) for item in _paragraph(section, "Arguments")}
    return Help(options=options, arguments=arguments)


def walk(path: list[str], get_help: Callable[[list[str]], str]) -> Iterator[tuple[str, Help]]:
    """``(command path, its --help)`` for a command and every subcommand under it."""
    shown = parse_help(get_help(path[1:]))
    yield " ".join(path), shown
    for name in shown.commands:
        yield from walk([*path, name], get_help)


def doc_problems(commands: list[tuple[str, Help]], docs: str) -> list[str]:
    """Every gap between the commands' --help and their sections of docs/cli.md."""
    sections, problems = doc_sections(docs), []
    for path, shown in commands:
        heading = path if path in sections else f"nightlake {path}"
        if heading not in sections:
            problems.append(f"{path}: no '### `{path}`' section in docs/cli.md")
            continue
        doc = documented(sections[heading])
        for kind in ("options", "arguments"):
            have, said = getattr(shown, kind), getattr(doc, kind)
            if have - said:
                problems.append(f"{heading}: {kind} not documented: {sorted(have - said)}")
            if said - have:
                problems.append(
                    f"{heading}: documented {kind} that --help lacks: {sorted(said - have)}"
                )
    return problems


def _in_process(app_: typer.Typer) -> Callable[[list[str]], str]:
    runner = CliRunner()

    def get_help(args: list[str]) -> str:
        result = runner.invoke(app_, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)
        return result.stdout

    return get_help


def _console_script(name: str) -> Callable[[list[str]], str]:
    script = Path(sys.executable).parent / name

    def get_help(args: list[str]) -> str:
        done = subprocess.run([script, *args, "--help"], capture_output=True, text=True)
        assert done.returncode == 0, (name, args, done.stderr)
        return done.stdout

    return get_help


def _console_scripts(repo: Path) -> list[str]:
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    return sorted(project["scripts"])


def test_cli_md_documents_every_option_of_every_command(repo):
    commands = list(walk(["nightlake"], _in_process(app)))
    names = {path for path, _ in commands}
    assert {"nightlake convert", "nightlake detsearch", "nightlake detregister add"} <= names
    assert "--image" in dict(commands)["nightlake detsearch"].options  # argparse's help, too
    problems = doc_problems(commands, (repo / "docs" / "cli.md").read_text())
    assert not problems, "docs/cli.md and --help disagree:\n" + "\n".join(problems)


def test_cli_md_documents_every_option_of_the_console_scripts(repo):
    scripts = [s for s in _console_scripts(repo) if s != "nightlake"]
    assert {"detregister", "detsearch"} <= set(scripts)
    commands = [c for s in scripts for c in walk([s], _console_script(s))]
    assert "detregister add" in dict(commands)
    problems = doc_problems(commands, (repo / "docs" / "cli.md").read_text())
    assert not problems, "docs/cli.md and --help disagree:\n" + "\n".join(problems)


def _toy_app() -> typer.Typer:
    toy = typer.Typer(add_completion=False, rich_markup_mode=None)

    @toy.command()
    def load(
        path: str = typer.Argument(..., help="What to load; see --lake."),
        lake: str = typer.Option(".", "--lake", help="Lake directory."),
        output: str = typer.Option("-", "-o", "--output", help="Where to write."),
        force: bool = typer.Option(False, "--force/--no-force", help="Mention --lake here."),
    ) -> None:
        """Load something."""

    @toy.command()
    def show() -> None:
        """Show something."""

    return toy


_TOY_DOCS = """
### `toy load`

Loads. Prose may mention `--anything`; only the Options paragraph counts.

Arguments: `PATH…`

Options: `--lake DIR`, `-o`/`--output FILE`,
`--force`/`--no-force`

### `toy show`
"""


def test_the_option_check_passes_a_toy_app_documented_in_full():
    commands = list(walk(["toy"], _in_process(_toy_app())))
    assert [p for p, _ in commands] == ["toy", "toy load", "toy show"]
    assert doc_problems(commands[1:], _TOY_DOCS) == []


def test_the_option_check_notices_an_option_added_without_docs():
    commands = list(walk(["toy"], _in_process(_toy_app())))[1:]
    docs = _TOY_DOCS.replace("`-o`/`--output FILE`,", "")
    assert doc_problems(commands, docs) == ["toy load: options not documented: ['--output', '-o']"]
    docs = _TOY_DOCS.replace("Arguments: `PATH…`", "")
    assert doc_problems(commands, docs) == ["toy load: arguments not documented: ['path']"]
    assert doc_problems(commands, _TOY_DOCS.replace("### `toy show`", "")) == [
        "toy show: no '### `toy show`' section in docs/cli.md"
    ]


def test_the_option_check_notices_docs_of_an_option_that_does_not_exist():
    commands = list(walk(["toy"], _in_process(_toy_app())))[1:]
    docs = _TOY_DOCS.replace("`--lake DIR`", "`--lake DIR`, `--db FILE`")
    assert doc_problems(commands, docs) == [
        "toy load: documented options that --help lacks: ['--db']"
    ]
    docs = _TOY_DOCS.replace("### `toy show`", "### `toy show`\n\nOptions: `--gone`")
    assert doc_problems(commands, docs) == [
        "toy show: documented options that --help lacks: ['--gone']"
    ]


@pytest.mark.parametrize(
    "help_text, options",
    [
        (
            "Options:\n  -o, --output <path>  Write.\n               see --lake\n",
            {"-o", "--output"},
        ),
        ("options:\n  -h, --help  show\n  --image FILE [FILE ...]\n      x --y\n", {"--image"}),
        ("Options:\n  --force / --no-force  Rewrite.\n", {"--force", "--no-force"}),
    ],
)
def test_parse_help_reads_option_rows_not_descriptions(help_text, options):
    assert parse_help(help_text).options == options


def test_readme_links_every_doc(repo):
    readme = (repo / "README.md").read_text()
    docs = sorted(p.relative_to(repo).as_posix() for p in (repo / "docs").glob("*.md"))
    missing = [d for d in docs if f"]({d})" not in readme]
    assert not missing, f"README.md does not link: {missing}"


def test_the_python_examples_of_the_docs_run_as_shown(repo, tmp_path, monkeypatch):
    """Every ``>>>`` example of README.md and docs/, run on ``demo-lake`` built from the
    fixtures as ``make demo`` builds it, prints what the docs show."""
    import doctest

    from nightlake import Lake
    from nightlake.ingest.convert import convert

    monkeypatch.chdir(tmp_path)
    convert(Lake("demo-lake"), [repo / "data" / "fixtures" / "collections"])
    parser, report = doctest.DocTestParser(), []
    # astropy pads its columns with trailing blanks, which the docs do not show
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    examples = 0
    for path in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]:
        # a code fence ends an example's output, as a blank line does
        text = re.sub(r"(?m)^```.*$", "", path.read_text())
        test = parser.get_doctest(text, {}, path.name, str(path), 0)
        examples += len(test.examples)
        runner.run(test, out=report.append)
    assert examples, "no examples found: the test would pass vacuously"
    assert runner.failures == 0, "".join(report)
