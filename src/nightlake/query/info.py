"""``nightlake info``: what a lake holds, how big it is, and which partitions are stale.

Everything comes from the Parquet footers (row counts, schema, field metadata) and the
``nightlake`` key-value metadata the converter records in every partition::

    {"sources": [{"path": ..., "size": ..., "mtime_ns": ..., "sha256": ...}], ...}

A partition is *stale* when a source changed since it was converted (size differs, or the
mtime differs and so does the content hash), and has a *missing source* when a recorded
source no longer exists. Hashes are computed only when size matches but mtime moved. A
partition written with other partition-shaping options (``--time-scale``, ``--partition-by``)
than the lake's last convert is stale too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nightlake.files import compare_fingerprint

if TYPE_CHECKING:
    from nightlake.query.lake import Lake


@dataclass(frozen=True)
class SourceState:
    """One recorded source of a partition and how it compares with the file on disk now."""

    path: str
    status: str  # "ok", "changed", "missing", "unrecorded"
    detail: str = ""


@dataclass(frozen=True)
class PartitionInfo:
    """One partition file of ``images``."""

    path: Path
    keys: dict[str, str]
    rows: int
    size: int
    sources: list[SourceState] = field(default_factory=list)
    #: "--time-scale tai (the lake: utc)" for each option written otherwise than the lake's
    other_options: list[str] = field(default_factory=list)

    @property
    def stale(self) -> bool:
        return bool(self.other_options) or any(s.status == "changed" for s in self.sources)

    @property
    def missing_sources(self) -> bool:
        return any(s.status == "missing" for s in self.sources)


@dataclass(frozen=True)
class ColumnInfo:
    """A column of ``images`` as SQL sees it, with the unit and description of the ECSV."""

    name: str
    type: str
    unit: str = ""
    description: str = ""
    original_name: str = ""


@dataclass(frozen=True)
class LakeInfo:
    """Summary of a lake (what ``nightlake info`` prints)."""

    path: Path
    partitions: list[PartitionInfo]
    columns: list[ColumnInfo]

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions)

    @property
    def size(self) -> int:
        return sum(p.size for p in self.partitions)

    def values(self, key: str) -> list[str]:
        return sorted({p.keys[key] for p in self.partitions if key in p.keys})

    @property
    def stale(self) -> list[PartitionInfo]:
        return [p for p in self.partitions if p.stale]

    @property
    def missing(self) -> list[PartitionInfo]:
        return [p for p in self.partitions if p.missing_sources]

    def to_dict(self) -> dict[str, Any]:
        nights = self.values("night")
        return {
            "lake": str(self.path),
            "partitions": len(self.partitions),
            "rows": self.rows,
            "size_bytes": self.size,
            "targets": self.values("target"),
            "nights": len(nights),
            "first_night": nights[0] if nights else None,
            "last_night": nights[-1] if nights else None,
            "stale_partitions": [_partition_dict(p) for p in self.stale],
            "missing_sources": [_partition_dict(p) for p in self.missing],
            "columns": [vars(c) for c in self.columns],
        }


def _partition_dict(p: PartitionInfo) -> dict[str, Any]:
    return {
        "partition": "/".join(f"{k}={v}" for k, v in p.keys.items()),
        "path": str(p.path),
        "sources": [vars(s) for s in p.sources if s.status != "ok"],
        "other_options": p.other_options,
    }


def source_state(recorded: dict[str, Any]) -> SourceState:
    """Compare one recorded source (path, size, mtime_ns, sha256) with the file now."""
    return SourceState(str(recorded.get("path", "")), *compare_fingerprint(recorded))


def _partition_keys(file: Path, root: Path) -> dict[str, str]:
    keys = {}
    for part in file.relative_to(root).parts[:-1]:
        name, sep, value = part.partition("=")
        if sep:
            keys[name] = value
    return keys


def lake_info(lake: Lake) -> LakeInfo:
    """Read every partition footer of ``lake`` and compare its sources with the disk."""
    import pyarrow.parquet as pq

    from nightlake.ingest.compact import partition_records
    from nightlake.ingest.convert import lake_options, option_text, written_options

    wanted = lake_options(lake.read_manifest())
    partitions = []
    first_schema = None
    footers: dict[Path, Any] = {}
    for path, _, recorded, file in partition_records(lake):  # a compacted file: its nights
        if file not in footers:
            footers[file] = pq.read_metadata(file)
        meta = footers[file]
        if first_schema is None:
            first_schema = meta.schema.to_arrow_schema()
        sources = [source_state(s) for s in recorded.get("sources", [])]
        written = written_options(recorded, path, lake.images_dir)
        other = [
            f"{option_text(k, written.get(k))} (the lake: {option_text(k, v)})"
            for k, v in wanted.items()
            if written.get(k) != v
        ]
        rows = meta.num_rows if path == file else int(recorded.get("rows", 0))
        size = file.stat().st_size
        if path != file:  # a compacted file's bytes, shared by rows
            size = size * rows // max(1, meta.num_rows)
        partitions.append(
            PartitionInfo(
                path=path,
                keys=_partition_keys(path, lake.images_dir),
                rows=rows,
                size=size,
                sources=sources,
                other_options=other,
            )
        )
    return LakeInfo(path=lake.path, partitions=partitions, columns=_columns(lake, first_schema))


def _columns(lake: Lake, schema) -> list[ColumnInfo]:
    """The columns of the ``images`` view with DuckDB's types and the ECSV units."""
    if schema is None:
        return []
    con = lake.connect()
    try:
        described = con.execute("DESCRIBE SELECT * FROM images").fetchall()
    finally:
        con.close()
    fields = {f.name: f for f in schema}
    columns = []
    for name, type_, *_ in described:
        meta = {}
        if name in fields and fields[name].metadata:
            meta = {
                k.decode(): v.decode("utf-8", "replace") for k, v in fields[name].metadata.items()
            }
        columns.append(
            ColumnInfo(
                name=name,
                type=type_,
                unit=meta.get("unit", ""),
                description=meta.get("description", ""),
                original_name=meta.get("original_name", ""),
            )
        )
    return columns


def human_size(size: int) -> str:
    """``12.3 MB`` (powers of 1000, like ``du --si``)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"
