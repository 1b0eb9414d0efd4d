"""Lakes converted from the committed DEEP fixtures, shared by the astro/sky/obscore tests."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"


def convert_into(lake_dir: Path, *sources: Path) -> Path:
    from nightlake.ingest.convert import convert
    from nightlake.lake import Lake

    report = convert(Lake(lake_dir), [str(s) for s in sources])
    assert not report.failed, report.failed
    return lake_dir
