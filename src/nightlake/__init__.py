"""nightlake: a Parquet + DuckDB query layer for DEEP survey metadata.

``from nightlake import Lake`` is the library entry point (:class:`nightlake.query.lake.Lake`);
heavy modules (pyarrow, duckdb, astropy) load only when first used, so the command line
starts fast.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Lake", "__version__"]


def __getattr__(name: str):
    if name == "Lake":
        from nightlake.query.lake import Lake

        return Lake
    raise AttributeError(f"module 'nightlake' has no attribute {name!r}")
