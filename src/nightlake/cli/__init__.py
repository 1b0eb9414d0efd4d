"""The command lines: ``nightlake`` (typer: :mod:`.app` with every command, :mod:`.root` the
app itself, :mod:`.options` the shared options) and ``detsearch`` (argparse, :mod:`.detsearch`).

Nothing is imported here, so that ``detsearch``, which lives in this package and is run once
per image by shell scripts, starts without loading typer.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point of ``nightlake``."""
    from nightlake.cli.app import main as run

    run(argv)
