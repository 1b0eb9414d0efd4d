"""Commands that build the lake: ``convert``."""

from __future__ import annotations

from nightlake.cli import app  # noqa: F401  (commands are added below as they land)
