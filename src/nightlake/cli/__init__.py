"""The ``nightlake`` command line: parse, call the library, print.

The app and its error handling are in :mod:`nightlake.cli.app`, the shared options in
:mod:`nightlake.cli.options`; the command modules imported here register themselves on the
app (import order is the order of ``--help``).
"""

# First, so that ``nightlake.cli.app`` is the Typer app, not its module, from here on.
from nightlake.cli.app import app, main  # noqa: I001

# Command modules register themselves on ``app``; import order is the order of --help.
from nightlake.cli import (  # noqa: E402, I001
    detreg_cmds,
    detsearch_cmds,
    history_cmds,
    lake_cmds,
    query_cmds,
    sky_cmds,
    trust_cmds,
)

__all__ = ["app", "main"]
