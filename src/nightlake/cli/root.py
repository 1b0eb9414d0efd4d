"""The ``nightlake`` typer app: the root command, error handling, the one broken-pipe/exit path.

Commands live in the ``*_cmds`` modules (one per area), which register themselves on
``app`` here; :mod:`nightlake.cli.app` imports them all. None of them holds logic of its own.
Errors raised by the library (:class:`nightlake.errors.NightlakeError`) and OS errors on
user files become one line on stderr and a non-zero exit; ``--debug`` (or
``NIGHTLAKE_DEBUG=1``) shows the traceback instead. Heavy modules are imported inside the
commands, so ``nightlake --help`` starts fast.
"""

from __future__ import annotations

import os
import sys

import typer
from typer.core import TyperGroup

from nightlake import __version__
from nightlake.errors import NightlakeError, one_line

_DEBUG_ENV = "NIGHTLAKE_DEBUG"


def debug_enabled() -> bool:
    return os.environ.get(_DEBUG_ENV, "") not in ("", "0")


def report_error(prog: str, message: str) -> None:
    """Print one error line, the only way a failure reaches the user without --debug."""
    typer.echo(f"{prog}: error: {one_line(message) or 'error'}", err=True)


class NightlakeGroup(TyperGroup):
    """A typer group that turns library errors into one line and an exit code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Run as click does, but a usage error (bad option value, unknown option, missing
        argument) is one line ``prog: error: …`` and exit 2, like every other error."""
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
        from typer.exceptions import Abort

        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            status = super().main(args, prog_name, complete_var, False, **extra)
        except NoArgsIsHelpError as exc:  # a bare `nightlake`: the help, as before
            exc.show()
            sys.exit(exc.exit_code)
        except ClickException as exc:
            report_error(prog_name or "nightlake", exc.format_message())
            sys.exit(exc.exit_code)
        except Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(status if isinstance(status, int) else 0)

    def parse_args(self, ctx, args):
        from nightlake.cli.coercion import use_plain_coercion

        use_plain_coercion(self, ctx)  # the group's own options, then each command's below
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            from nightlake.cli.coercion import use_plain_coercion

            use_plain_coercion(command, ctx)
        return name, command, rest

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except NightlakeError as exc:
            if debug_enabled():
                raise
            report_error(ctx.find_root().info_name or "nightlake", str(exc))
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            if _broken_pipe(exc):
                # `nightlake … | head`: the reader has what it wanted; leave quietly (and
                # keep Python's own flush at exit from failing on the closed pipe)
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise typer.Exit(0) from None
            if debug_enabled():
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            report_error(ctx.find_root().info_name or "nightlake", f"{where}{exc.strerror or exc}")
            raise typer.Exit(1) from None


def _broken_pipe(exc: OSError) -> bool:
    # pyarrow's writers raise a plain OSError that names the broken pipe
    return isinstance(exc, BrokenPipeError) or "Broken pipe" in str(exc)


def make_app(**kwargs) -> typer.Typer:
    """A Typer app with nightlake's error handling and house settings."""
    kwargs.setdefault("no_args_is_help", True)
    return typer.Typer(
        cls=NightlakeGroup,
        pretty_exceptions_enable=False,
        add_completion=False,
        rich_markup_mode=None,
        **kwargs,
    )


app = make_app(
    help="Query DEEP survey metadata: image collections and detrends, as a Parquet lake."
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nightlake {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one error line."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """nightlake: SQL over every night of the survey."""
    if debug:
        os.environ[_DEBUG_ENV] = "1"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point of ``nightlake``."""
    args = argv if argv is not None else sys.argv[1:]
    app_for(args)(args=args, prog_name="nightlake")


def app_for(args: list[str]) -> typer.Typer:
    """``app`` with only the command ``args`` run, when that is a plain command: typer builds
    a click command from each function's signature before it runs any, and one is all a run
    needs. The whole app for everything else (its own help, a group, an unknown name)."""
    from typer.main import get_command_name

    name = next((a for a in args if not a.startswith("-")), None)
    chosen = [
        info
        for info in app.registered_commands
        if name is not None and (info.name or get_command_name(info.callback.__name__)) == name
    ]
    if len(chosen) != 1:
        return app
    one = make_app(help=app.info.help)
    one.registered_callback = app.registered_callback
    one.registered_commands = chosen
    return one
