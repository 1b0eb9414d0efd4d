"""Compaction: the per-night partitions of a target and year merged into one Parquet file.

A whole-lake query pays per file (footer, schema, scan setup), not per row: the per-night
files of a 10-year survey cost many times one file of the same rows, one file per target and
year comes close to it (docs/design.md, "Speed at survey scale"; the figures are in
bench/RESULTS.md). The compacted form::

    images/target=A0a/year=2019/2019_A0a.parquet   rows of every night of 2019 (``night`` a
                                                   column), sorted by night, detector, visit;
                                                   row groups of ROW_GROUP_ROWS rows, so the
                                                   statistics of ``night`` prune a one-night
                                                   query to its row groups

Its ``nightlake`` key-value metadata keeps each night's own record (sources, options, rows):
``convert`` and ``info`` see the partitions it holds as if they were separate files.

Per-night files may sit beside compacted ones: ``convert`` writes them, and the compaction
that follows in the same run (under the lake lock) merges them into their target-year. A
per-night file supersedes the rows of its night in a compacted file: the view excludes them
(:func:`nightlake.lake.pending_keys`), so a reader sees the old rows or the new ones at every
step, and a compaction killed between writing its file and deleting the per-night ones leaves
a lake that reads the same and is finished by the next writer.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nightlake.lake import METADATA_KEY, YEAR, LakeDirectory, is_compacted, year_of

#: 3: target-years may be compacted (``images/target=T/year=Y/``); ``layout`` in nightlake.json
LAKE_FORMAT_VERSION = 3
#: rows per row group: a multiple of DuckDB's vector (2,048). One row group per night (a few
#: hundred rows) costs more than it prunes; tens of thousands of rows come close to one file
#: (bench/RESULTS.md, "Compaction as built").
ROW_GROUP_ROWS = 32_768
#: a lake of this many per-night files or more is compacted by the convert that reaches it,
#: since a whole-lake query pays for each file it opens (docs/design.md, "Speed at survey
#: scale"); a small lake keeps the per-night form, which a person can read file by file
AUTO_COMPACT_FILES = 200


def compacted_path(lake: LakeDirectory, target: str, year: str) -> Path:
    return lake.images_dir / f"target={target}" / f"{YEAR}={year}" / f"{year}_{target}.parquet"


def partition_records(lake: LakeDirectory) -> Iterator[tuple[Path, tuple, dict[str, Any], Path]]:
    """Every partition of the lake as ``(path, schema signature, nightlake metadata, file)``.

    A compacted file gives one record per partition it holds, under the per-night path that
    partition would have (which does not exist); a per-night file gives itself.
    """
    import pyarrow.parquet as pq

    from nightlake.ingest.convert import partition_path, schema_signature

    for file in lake.image_files():
        schema = pq.read_schema(file)
        meta = _metadata(schema)
        if not is_compacted(file, lake.images_dir):
            yield file, schema_signature(schema), meta, file
            continue
        signature = schema_signature(schema.remove(schema.get_field_index("night")))
        for record in unpacked_records(meta):
            levels = tuple(record["options"]["partition_by"])
            key = tuple(str(record[level]) for level in levels)
            yield partition_path(lake, levels, key), signature, record, file


def compact(
    lake: LakeDirectory, touched: Iterable[Path] | None = None, *, lock_timeout: float = 30.0
) -> list[Path]:
    """Compact the lake (``nightlake compact``) under its lock; see :func:`compact_locked`."""
    from nightlake.errors import LakeError

    if not lake.images_dir.is_dir():
        raise LakeError(f"{lake.path}: no lake here (nothing to compact)")
    with lake.locked(lock_timeout):
        return compact_locked(lake, touched, force=True)


def compact_locked(
    lake: LakeDirectory, touched: Iterable[Path] | None = None, *, force: bool = False
) -> list[Path]:
    """Merge per-night partitions into their target-year files; the caller holds the lock.

    ``touched``: per-night partition paths written or removed (``convert``'s report); only
    their target-years are rewritten. ``None``: every target-year with a per-night file.
    Does nothing unless the lake's layout is ``compacted``, or ``force`` (which sets it), or
    the lake holds :data:`AUTO_COMPACT_FILES` per-night files or more (then every target-year
    is compacted and the layout set). Returns the compacted files written.
    """
    manifest = lake.read_manifest()
    files = lake.image_files()
    if not force and manifest.get("layout") != "compacted":
        if len(files) < AUTO_COMPACT_FILES:
            return []
        touched = None
    groups: dict[tuple[str, str], list[Path]] = defaultdict(list)  # (target, year) -> per-night
    for f in files:
        if not is_compacted(f, lake.images_dir):
            target, night = _target_night(f, lake.images_dir)
            groups[(target, year_of(night))].append(f)
    wanted = set(groups)
    removed: dict[tuple[str, str], set[str]] = defaultdict(set)
    if touched is not None:
        wanted = set()
        for path in touched:
            target, night = _target_night(path, lake.images_dir)
            wanted.add((target, year_of(night)))
            if not path.exists():
                removed[(target, year_of(night))].add(_key_of(path, lake.images_dir))
        # a per-night file beside a compacted one (a run cut short) is merged too
        wanted |= {g for g in groups if compacted_path(lake, *g).exists()}
    written = []
    for target, year in sorted(wanted):
        out = _compact_one(
            lake, target, year, groups.get((target, year), []), removed[(target, year)]
        )
        if out is not None:
            written.append(out)
    if manifest.get("layout") != "compacted":
        lake.write_manifest(
            {**lake.read_manifest(), "format_version": LAKE_FORMAT_VERSION, "layout": "compacted"}
        )
    return written


def _key_of(path: Path, images_dir: Path) -> str:
    """A partition's key below its target: ``night`` or ``night\x1fdetector``."""
    return "\x1f".join(p.split("=", 1)[1] for p in path.relative_to(images_dir).parts[1:-1])


def _row_keys(table):
    """Each row's partition key below its target, as :func:`_key_of` spells it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    night = table.column("night")
    if not _by_detector(table):
        return night
    detector = pc.cast(table.column("detector"), pa.string())
    return pc.binary_join_element_wise(night, detector, "\x1f")


def _by_detector(table) -> bool:
    found = unpacked_records(_metadata(table.schema)) or [{}]
    return "detector" in found[0].get("options", {}).get("partition_by", [])


def _target_night(path: Path, images_dir: Path) -> tuple[str, str]:
    parts = path.relative_to(images_dir).parts
    return parts[0].split("=", 1)[1], parts[1].split("=", 1)[1]


def _compact_one(
    lake: LakeDirectory, target: str, year: str, per_night: list[Path], removed: set[str]
) -> Path | None:
    """Rewrite one target-year: its compacted rows, minus the nights of ``removed`` and of
    ``per_night`` files, plus those files' rows. Temp file + rename, then the per-night
    files go (the view already prefers them, so every moment reads the same)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from nightlake.files import commit_temp
    from nightlake.ingest.convert import written_options
    from nightlake.lake import write_parquet_temp

    target_path = compacted_path(lake, target, year)
    tables, records = [], []
    keys_new: set[str] = set()
    for f in sorted(per_night):
        table = pq.read_table(f)
        # the keys and options of its path, so a record read from the compacted file alone
        # says what partition it was (format 1 recorded neither)
        parts = f.relative_to(lake.images_dir).parts[:-1]
        record = _metadata(table.schema)
        record = {
            **record,
            **dict(p.split("=", 1) for p in parts),
            "options": written_options(record, f, lake.images_dir),
        }
        night = _target_night(f, lake.images_dir)[1]
        keys_new.add(_key_of(f, lake.images_dir))
        records.append(record)
        # pyarrow adds no Hive columns for a file read alone; a file may hold its own
        # ``night`` column, which the partition's value overrides (as in the view)
        value = pa.array([night] * table.num_rows, pa.string())
        table = table.replace_schema_metadata(None)
        if "night" in table.column_names:
            at = table.column_names.index("night")
            # its field metadata stays: the source's datatype, for astropy outputs
            field = pa.field("night", pa.string(), metadata=table.schema.field(at).metadata)
            table = table.set_column(at, field, value)
        else:
            table = table.append_column("night", value)
        tables.append(table)
    if target_path.exists():
        old = pq.read_table(target_path)
        drop = keys_new | removed
        keep = pc.invert(pc.is_in(_row_keys(old), pa.array(sorted(drop), pa.string())))
        tables.insert(0, old.filter(keep).replace_schema_metadata(None))
        records[:0] = [
            r
            for r in unpacked_records(_metadata(old.schema))
            if "\x1f".join(str(r[k]) for k in r["options"]["partition_by"][1:]) not in drop
        ]
    tables = [t for t in tables if t.num_rows]
    if not tables:
        target_path.unlink(missing_ok=True)
        return None
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None  # nights whose types disagree stay per-night; the view reads both
    sort = [
        (c, "ascending") for c in ("night", "detector", "visit", "mjd") if c in table.column_names
    ]
    table = table.take(pc.sort_indices(table.select([c for c, _ in sort]), sort_keys=sort))
    records.sort(key=lambda r: tuple(str(r.get(k, "")) for k in ("night", "detector")))
    meta = {"format_version": LAKE_FORMAT_VERSION, "compacted": True, **_packed(records)}
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta, default=str).encode()})
    target_path.parent.mkdir(parents=True, exist_ok=True)
    commit_temp(write_parquet_temp(table, target_path, row_group_size=ROW_GROUP_ROWS), target_path)
    for f in per_night:
        f.unlink(missing_ok=True)
        for directory in (f.parent, f.parent.parent):
            if directory != lake.images_dir / f"target={target}":
                try:
                    directory.rmdir()
                except OSError:
                    pass
    return target_path


#: a record's own fields; the rest (sources, options, renames, …) is the same for every
#: detector of a night and is stored once in ``shared``
_OWN = ("target", "night", "detector", "rows")


def _packed(partitions: list[dict[str, Any]]) -> dict[str, Any]:
    """The records as stored: each names its ``shared`` part by index. Stored whole, the
    per-detector layout's records (62 per night, alike but for detector and rows) made each
    footer megabytes that every query parsed."""
    shared: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    packed = []
    for record in partitions:
        rest = {k: v for k, v in record.items() if k not in _OWN}
        key = json.dumps(rest, sort_keys=True, default=str)
        if key not in index:
            index[key] = len(shared)
            shared.append(rest)
        packed.append({**{k: record[k] for k in _OWN if k in record}, "shared": index[key]})
    return {"shared": shared, "partitions": packed}


def unpacked_records(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Each partition's whole record from a compacted file's metadata (records without a
    ``shared`` index, as the first compacted files wrote them, are whole already)."""
    shared = meta.get("shared", [])
    out = []
    for record in meta.get("partitions", []):
        if "shared" in record:
            record = {**shared[record["shared"]], **record}
            del record["shared"]
        out.append(record)
    return out


def _metadata(schema) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}
