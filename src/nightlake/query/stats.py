"""Survey statistics: the table macros of ``sql/20_stats.sql``, by night, target, detector.

The statistics themselves are written once, in SQL; this module only names which macro
answers which ``--by`` and runs it on a lake.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nightlake.errors import LakeError, UsageError

if TYPE_CHECKING:
    import pyarrow as pa

    from nightlake.query.lake import Lake

#: ``nightlake stats --by X`` → the table macro that computes it.
STATS_MACROS = {
    "night": "nightly_stats",
    "target": "target_stats",
    "detector": "detector_stats",
    "survey": "survey_stats",
}


def stats_query(by: str) -> str:
    """The SQL for one kind of statistics (``night``, ``target``, ``detector``, ``survey``)."""
    try:
        macro = STATS_MACROS[by]
    except KeyError:
        raise UsageError(f"unknown --by {by!r}: choose one of {', '.join(STATS_MACROS)}") from None
    return f"SELECT * FROM {macro}()"


def require_images(lake: Lake) -> None:
    """Statistics need partitions: say so plainly instead of DuckDB's missing-table error."""
    if not lake.path.is_dir():
        raise LakeError(f"{lake.path}: no lake here")
    if not lake.image_files():
        raise LakeError(
            f"{lake.path}: the lake has no images yet "
            f"(add some with: nightlake convert SOURCE --lake {lake.path})"
        )


def stats_table(lake: Lake, by: str) -> pa.Table:
    """The statistics of ``lake`` grouped ``by`` night, target, detector or survey."""
    require_images(lake)
    return lake.sql(stats_query(by))
