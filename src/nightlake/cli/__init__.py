"""The command lines: ``nightlake`` (the typer app in :mod:`nightlake.cli.app`) and
``detsearch`` (argparse, :mod:`nightlake.cli.detsearch`).

Nothing is imported here, so that ``detsearch``, which lives in this package and is run once
per image by shell scripts, starts without loading typer.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point of ``nightlake``."""
    from nightlake.cli.app import main as run

    run(argv)
