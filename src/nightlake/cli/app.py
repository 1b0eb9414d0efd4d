"""The ``nightlake`` app with every command registered: the root app (:mod:`.root`) plus the
command modules, which register themselves on it (import order is the order of ``--help``).

Kept apart from :mod:`nightlake.cli` so that importing that package (as ``detsearch`` does)
loads no typer.
"""

from nightlake.cli import (  # noqa: F401, I001
    detreg_cmds,
    detrend_cmds,
    history_cmds,
    lake_cmds,
    query_cmds,
    serve_cmds,
    sky_cmds,
    trust_cmds,
)
from nightlake.cli.root import app, debug_enabled, main, make_app, report_error

__all__ = ["app", "debug_enabled", "main", "make_app", "report_error"]
