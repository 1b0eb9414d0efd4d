"""What keeps ``nightlake`` quick to start, held equal to typer's own behaviour: option values
converted without pydantic (nightlake.cli.coercion) come out as typer's converter makes them,
value for value, and a run that builds only its command (nightlake.cli.root.app_for) reads
its options and help as the whole app does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import typer.main
from hypothesis import given, settings
from hypothesis import strategies as st
from typer._click.exceptions import BadParameter
from typer._coercion import build_runtime_param

from nightlake.cli.app import app
from nightlake.cli.coercion import PlainParam, use_plain_coercion

GROUP = typer.main.get_command(app)


def commands(group=GROUP):
    for command in group.commands.values():
        yield command
        if hasattr(command, "commands"):
            yield from commands(command)


def plain_params() -> dict[str, object]:
    """One parameter of each leaf type and list type the commands have, given plain coercion."""
    found = {}
    ctx = GROUP.make_context("nightlake", ["sql"], resilient_parsing=True)
    for command in commands():
        use_plain_coercion(command, ctx)
        for param in command.get_params(ctx):
            runtime = getattr(param, "_runtime_param", None)
            if isinstance(runtime, PlainParam):
                found.setdefault(f"{runtime.leaf.__name__}{'[]' * runtime.is_list}", param)
    return found


PARAMS = plain_params()


def test_every_parameter_of_every_command_is_plain():
    ctx = GROUP.make_context("nightlake", ["sql"], resilient_parsing=True)
    other = [
        f"{command.name} {param.name}"
        for command in commands()
        for param in command.get_params(ctx)
        if hasattr(param, "type_descriptor") and not isinstance(param._runtime_param, PlainParam)
    ]
    assert other == []
    assert {"str", "int", "float", "bool", "Path", "str[]", "Path[]", "tuple"} <= set(PARAMS)


def outcome(convert):
    try:
        return "ok", convert()
    except BadParameter as exc:
        return "error", exc.format_message()


def both(kind: str, value):
    param = PARAMS[kind]
    ours = outcome(lambda: param._runtime_param.coerce(value, param=param, ctx=None))
    typers = build_runtime_param(param.type_descriptor)
    theirs = outcome(lambda: typers.coerce(value, param=param, ctx=None))
    return ours, theirs


NUMBERISH = st.from_regex(r"\A[-+ ]?[0-9]{0,20}(\.[0-9]{0,17})?([eE][-+]?[0-9]{1,3})?\Z")
TEXT = st.text(max_size=12) | NUMBERISH | st.sampled_from(["inf", "-nan", "1_000", "0x1f"])


@settings(deadline=None)  # the first example imports pydantic
@given(value=TEXT)
def test_numbers_and_text_as_typer_makes_them(value):
    for kind in ("str", "int", "float"):
        ours, theirs = both(kind, value)
        assert repr(ours) == repr(theirs)  # repr: the same type, and nan equals nan


@given(values=st.lists(TEXT, max_size=4))
def test_lists_as_typer_makes_them(values):
    ours, theirs = both("str[]", tuple(values))
    assert ours == theirs


@pytest.mark.parametrize("value", [True, False, None])
def test_flags(value):
    ours, theirs = both("bool", value)
    assert ours == theirs


def test_paths_as_typer_makes_them(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("x")
    secret.chmod(0)
    values = ["", "a", "./b/../c", str(tmp_path), "~/x", "-", "x\0y", str(secret)]
    for value in values:
        ours, theirs = both("Path", value)
        assert ours == theirs, value
        assert both("Path[]", (value, "z")) == both("Path[]", (value, "z"))
    unreadable = both("Path", str(secret))[0]
    assert unreadable[0] == ("error" if os.geteuid() else "ok")
    assert both("Path", "a")[0] == ("ok", Path("a"))


def command_names() -> list[str]:
    return sorted(GROUP.commands)


@pytest.mark.parametrize("name", command_names())
def test_a_run_builds_only_its_command_and_reads_alike(name):
    from typer.testing import CliRunner

    from nightlake.cli.root import app_for

    one = app_for(["--debug", name, "--help"])
    assert (one is app) == hasattr(GROUP.commands[name], "commands")  # groups: the whole app
    if one is not app:
        assert list(typer.main.get_command(one).commands) == [name]
    runner = CliRunner()
    ours = runner.invoke(one, [name, "--help"])
    whole = runner.invoke(app, [name, "--help"])
    assert ours.exit_code == whole.exit_code == 0
    assert ours.stdout == whole.stdout


@pytest.mark.parametrize("args", [[], ["--help"], ["--version"], ["no-such-command"]])
def test_the_whole_app_without_a_command(args):
    from nightlake.cli.root import app_for

    assert app_for(args) is app


@pytest.mark.parametrize(
    "kind, value",
    [("int", 5), ("int", 2.0), ("float", 30), ("float", 2.5), ("str", 7), ("Path", Path("a"))],
)
def test_defaults_already_typed(kind, value):
    ours, theirs = both(kind, value)
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize(
    "value", [("2026-01-01", "2026-02-01"), ["a", "b"], ("a",), ("a", "b", "c"), ("a", 3), None]
)
def test_tuples_as_typer_makes_them(value):
    ours, theirs = both("tuple", value)
    assert repr(ours) == repr(theirs)
