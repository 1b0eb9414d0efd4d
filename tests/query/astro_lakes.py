"""Lakes converted from the committed DEEP fixtures, shared by the astro/sky/obscore tests."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "data" / "fixtures"
#: the real survey tables beside the checkout (../shared/data), or where the variable says
#: (a git worktree sits deeper than the main checkout)
SHARED_DATA = Path(os.environ.get("NIGHTLAKE_SHARED_DATA") or REPO.parent / "shared" / "data")


def convert_into(lake_dir: Path, *sources: Path) -> Path:
    from nightlake.ingest.convert import convert
    from nightlake.lake import Lake

    report = convert(Lake(lake_dir), [str(s) for s in sources])
    assert not report.failed, report.failed
    return lake_dir
