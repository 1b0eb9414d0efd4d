"""Compaction: the per-night partitions of a year merged into a few parts of bounded size.

A whole-lake query pays per file (footer, schema, scan setup), not per row, so a lake of many
small per-night files costs many times one file of the same rows; adding a night rewrites the
part that holds its target, so parts are bounded (docs/design.md, "Speed at survey scale"; the
figures are in bench/RESULTS.md). The compacted form::

    images/year=2019/2019_A0a.parquet   the rows of 2019 of targets A0a up to (not including)
    images/year=2019/2019_B1e.parquet   the next part's first target, B1e; ``target`` and
                                        ``night`` columns, sorted by target, night, detector,
                                        visit; at most PART_ROWS rows (a target with more is
                                        a part alone)

Row groups of ROW_GROUP_ROWS rows, so the statistics of the sorted keys prune a one-target
query to its parts' row groups, and a one-night query to its year's. Each file's
``nightlake`` key-value metadata keeps each partition's own record (sources, options, rows):
``convert`` and ``info`` see the partitions it holds as if they were separate files.
Format 3's one file per target and year (``images/target=T/year=Y/Y_T.parquet``) is read as
it is, and merged into parts when its year is next rewritten.

Precedence, so that a reader sees the old rows or the new ones at every step (and a compaction
killed midway leaves a lake that reads the same, finished by the next writer): a per-night
file supersedes its partition in any compacted file (:func:`nightlake.lake.pending_keys`), a
target-year file supersedes its target's rows in its year's parts, and a part's rows of
targets from the next part's first on are not read (the next part holds them): new parts are
written last first, old ones deleted first first (temp file and rename each).
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nightlake.lake import (
    CUT_MARKER,
    METADATA_KEY,
    PARTITION_SORT,
    YEAR,
    ImageFiles,
    LakeDirectory,
    cut_years,
    is_compacted,
    is_year_file,
    part_bounds,
    part_first,
    part_ranges,
    partition_metadata,
    pending_keys,
    read_partition_metadata,
    sorted_by,
    year_of,
)

if TYPE_CHECKING:
    import pyarrow as pa

#: 3: target-years may be compacted (``images/target=T/year=Y/``); ``layout`` in nightlake.json;
#: 4: years are compacted into parts (``images/year=Y/Y_<first target>.parquet``)
LAKE_FORMAT_VERSION = 4
#: rows per row group: a multiple of DuckDB's vector (2,048). One row group per night (a few
#: hundred rows) costs more than it prunes; tens of thousands of rows come close to one file
#: (bench/RESULTS.md, "Compaction as built").
ROW_GROUP_ROWS = 32_768
#: rows of a part, at most (a target with more is a part alone): adding a night rewrites the
#: part of its target, so this bounds what a night costs, and a year of fewer rows is one
#: file (docs/design.md)
PART_ROWS = 8_192
#: a lake of this many per-night files or more is compacted by the convert that reaches it,
#: since a whole-lake query pays for each file it opens (docs/design.md, "Speed at survey
#: scale"); a small lake keeps the per-night form, which a person can read file by file
AUTO_COMPACT_FILES = 200
#: the key columns of a part, in sort order
SORT_COLUMNS = ("target", "night", *PARTITION_SORT)
#: held while a year's rewrite (years run on threads) touches what years share: the manifest
#: (two cuts writing it at once would count one generation, and a cached view would miss the
#: second) and a target's directory (a year's emptied one removed while another year's
#: per-night file is put in it)
_SHARED = threading.Lock()


#: the footer cache beside a lake's manifest (:class:`Footers`), and the form it is written in
FOOTERS = ".nightlake-footers.json"
FOOTERS_FORMAT = 2  # 2: records without UNCACHED (format 1 held them: read as empty)

#: what a record read through the cache leaves out: its source's ECSV header text and table
#: meta, ~5 of a record's ~6 kB, which none of its readers (a convert's plan, a table's
#: provenance, ``nightlake info``) uses; a file's own footer has them
UNCACHED = ("ecsv_header", "table_meta")


class Footers:
    """What :func:`partition_records` needs of each image file's footer (its schema signature
    and its ``nightlake`` metadata), read from the file, or from the cache beside the lake
    when the file's stamp (mtime, size, inode) is the one the cache recorded with it.

    Without it every convert read every footer, the lake's whole history, to add one night:
    0.1 s for the 62 files of the scale-1.0 survey; so did every astropy table's provenance
    (``lake_fingerprint``) and ``nightlake info``. The cache is only ever a copy: a file
    rewritten, added or removed by any writer (an older nightlake too) has another stamp or
    none, and a cache that is missing, unreadable or of another form counts as empty.
    """

    def __init__(self, lake: LakeDirectory, cached: dict[str, Any] | None = None) -> None:
        self.lake = lake
        self.cached = cached or {}
        self.seen: dict[str, dict[str, Any]] = {}
        self.read_any = False

    @classmethod
    def load(cls, lake: LakeDirectory) -> Footers:
        """The cache as the last writer of ``lake`` left it."""
        try:
            data = json.loads((lake.path / FOOTERS).read_bytes())
            files = data["files"] if data.get("format") == FOOTERS_FORMAT else {}
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            files = {}
        return cls(lake, files if isinstance(files, dict) else {})

    def read(self, file: Path) -> tuple[tuple, dict[str, Any]]:
        """(schema signature, nightlake metadata) of ``file``."""
        from nightlake.files import file_stamp

        key = file.relative_to(self.lake.images_dir).as_posix()
        # taken first (a later rewrite misses next time), from the file opened (NFS)
        stamp = list(file_stamp(file, opened=True) or ())
        entry = self.cached.get(key)
        try:
            if entry["stamp"] != stamp:
                raise KeyError(key)
            signature = tuple((str(n), str(t)) for n, t in entry["signature"])
            meta = entry["meta"]
            if not isinstance(meta, dict):
                raise TypeError(key)
        except (KeyError, TypeError, ValueError):  # not cached, stale, or not of this form
            import pyarrow.parquet as pq

            from nightlake.ingest.convert import schema_signature

            schema = pq.read_schema(file)
            signature, meta = schema_signature(schema), _slim(partition_metadata(schema))
            self.read_any = True
        self.seen[key] = {"stamp": stamp, "signature": signature, "meta": meta}
        return signature, meta

    @classmethod
    def refresh(cls, lake: LakeDirectory) -> None:
        """Bring the cache up to the lake's files (the caller holds its lock): at the end of
        a convert or a compaction, so the next plan reads no footer of what it wrote."""
        footers = cls.load(lake)
        for file in lake.image_files():
            footers.read(file)
        footers.save()

    def save(self) -> None:
        """Write what was read, when it differs from the cache (a footer was read, or a file
        went); by :meth:`refresh` only, under the lake's lock. A cache that cannot be written
        (a full disk) is left as it is: the writes it would describe are done, and a stale
        or broken cache costs the next plan only the footers it reads."""
        from nightlake.lake import atomic_write_bytes

        if self.read_any or self.seen.keys() != self.cached.keys():
            data = {"format": FOOTERS_FORMAT, "files": self.seen}
            try:
                atomic_write_bytes(self.lake.path / FOOTERS, json.dumps(data).encode())
            except OSError:
                pass


def _slim(meta: dict[str, Any]) -> dict[str, Any]:
    """``nightlake`` metadata without :data:`UNCACHED`, in each record of a compacted file's
    too (its shared parts, or its records whole as the first compacted files wrote them)."""

    def slim(record: Any) -> Any:
        if not isinstance(record, dict):
            return record
        return {k: v for k, v in record.items() if k not in UNCACHED}

    meta = slim(meta)
    for packed in ("shared", "partitions"):
        if isinstance(meta.get(packed), list):
            meta[packed] = [slim(r) for r in meta[packed]]
    return meta


def partition_records(lake: LakeDirectory) -> Iterator[tuple[Path, tuple, dict[str, Any], Path]]:
    """Every partition of the lake as ``(path, schema signature, nightlake metadata, file)``,
    the footers read through the cache the last writer left (:class:`Footers`; only a
    writer's :meth:`Footers.refresh` writes it). The metadata lacks :data:`UNCACHED`.

    A compacted file gives one record per partition it holds, under the per-night path that
    partition would have (which does not exist); a per-night file gives itself.
    """
    from nightlake.ingest.convert import partition_path

    footers = Footers.load(lake)
    files = lake.image_files()
    kinds = ImageFiles.of(files, lake.images_dir)
    # the view's precedence (nightlake.lake.images_select_sql): a part's rows below the next
    # part's first while a cut is under way, a target-year file over its target's rows in a
    # part, a per-night file over its partition in any compacted file
    bounds = dict(part_bounds(kinds.parts, within=cut_years(kinds.parts, lake.images_dir)))
    legacy = {(f.parent.parent.name.split("=", 1)[1], f.parent.name) for f in kinds.target_years}
    pending = set(pending_keys(kinds, lake.images_dir))
    for file in files:
        signature, meta = footers.read(file)
        if not is_compacted(file, lake.images_dir):
            yield file, signature, meta, file
            continue
        added = ("target", "night") if is_year_file(file, lake.images_dir) else ("night",)
        signature = tuple(c for c in signature if c[0] not in added)
        for record in unpacked_records(meta):
            if file in bounds and record["target"] >= bounds[file]:
                continue
            if (
                is_year_file(file, lake.images_dir)
                and (record["target"], file.parent.name) in legacy
            ):
                continue
            levels = tuple(record["options"]["partition_by"])
            key = tuple(str(record[level]) for level in levels)
            if key not in pending:
                yield partition_path(lake, levels, key), signature, record, file


def compact(
    lake: LakeDirectory, touched: Iterable[Path] | None = None, *, lock_timeout: float = 30.0
) -> list[Path]:
    """Compact the lake (``nightlake compact``) under its lock; see :func:`compact_locked`."""
    from nightlake.errors import LakeError

    if not lake.images_dir.is_dir():
        raise LakeError(f"{lake.path}: no lake here (nothing to compact)")
    with lake.locked(lock_timeout):
        written = compact_locked(lake, touched, force=True)
        Footers.refresh(lake)
        return written


def will_compact(lake: LakeDirectory, new: Iterable[Path]) -> bool:
    """Will :func:`compact_locked` compact these new per-night partitions (the lake is
    compacted, or they bring it to :data:`AUTO_COMPACT_FILES` per-night files)?"""
    if lake.read_manifest().get("layout") == "compacted":
        return True
    files = {f for f in lake.image_files() if not is_compacted(f, lake.images_dir)}
    return len(files | set(new)) >= AUTO_COMPACT_FILES


def compact_locked(
    lake: LakeDirectory,
    touched: Iterable[Path] | None = None,
    *,
    force: bool = False,
    fresh: dict[Path, pa.Table] | None = None,
) -> list[Path]:
    """Merge per-night partitions into year parts; the caller holds the lock.

    ``touched``: per-night partition paths written or removed (``convert``'s report); only
    the parts of their targets are rewritten. ``None``: every year with a per-night
    partition, and with ``force`` every year holding format 3's target-year files.
    ``fresh``: per-night partitions ``convert`` kept in memory instead of writing them (path
    -> table with its ``nightlake`` metadata); they must be compacted (:func:`will_compact`).
    Does nothing unless the lake's layout is ``compacted``, or ``force`` (which sets it), or
    the lake holds :data:`AUTO_COMPACT_FILES` per-night files or more (then every year is
    compacted and the layout set). Returns the compacted files written.
    """
    fresh = fresh or {}
    manifest = lake.read_manifest()
    files = lake.image_files()
    if not force and manifest.get("layout") != "compacted":
        if not fresh and not will_compact(lake, []):
            return []
        touched = None
    years: dict[str, _Year] = defaultdict(_Year)
    kinds = ImageFiles.of(files, lake.images_dir)
    for f in kinds.parts:
        years[f.parent.name.split("=", 1)[1]].parts[part_first(f)] = f
    for f in kinds.target_years:
        target, year = _target_night(f, lake.images_dir)
        years[year].target_files[target] = f
    for f in kinds.per_night:
        years[_year_of_path(f, lake.images_dir)].per_night[f] = f
    for path, table in fresh.items():
        years[_year_of_path(path, lake.images_dir)].per_night[path] = table
    wanted = {y for y, state in years.items() if state.per_night}
    if touched is not None:
        for path in touched:
            year = _year_of_path(path, lake.images_dir)
            if path not in fresh and not path.exists():
                years[year].removed.add(_key_of(path, lake.images_dir))
            wanted.add(year)
    for year, state in years.items():
        if (lake.images_dir / f"{YEAR}={year}" / CUT_MARKER).exists():  # a cut left short
            state.stale = _stale_parts(state.parts) or {""}
    if force and touched is None:  # ``nightlake compact``: format 3's target-years too,
        for year, state in years.items():  # and years whose parts would be cut otherwise
            state.whole = bool(state.target_files) or _cut_again(state.parts)
            if state.whole or state.stale:
                wanted.add(year)
    from nightlake.scaleout import threaded

    # years share no file (what they share takes turns: _SHARED): a year's sort and zstd
    # writes run on one core, so several years at once keep every core busy
    written = []
    for parts in threaded(lambda year: _compact_year(lake, year, years[year]), sorted(wanted)):
        written.extend(parts)
    settled = (manifest.get("layout"), manifest.get("format_version")) == (
        "compacted",
        LAKE_FORMAT_VERSION,
    )
    if wanted or not settled:  # also when only files changed: cached views are rebuilt on it
        lake.write_manifest(
            {**lake.read_manifest(), "format_version": LAKE_FORMAT_VERSION, "layout": "compacted"}
        )
    return written


@dataclass
class _Year:
    """One year of the lake: its parts, format 3's target-year files, per-night partitions,
    removed keys."""

    parts: dict[str, Path] = field(default_factory=dict)  # first target -> part
    target_files: dict[str, Path] = field(default_factory=dict)
    per_night: dict[Path, Any] = field(default_factory=dict)  # path -> itself or its table
    removed: set[str] = field(default_factory=set)  # keys (_key_of) whose rows are gone
    #: firsts of parts holding rows past their range (a cut left short; {""}: none, but the
    #: year's marker is still there)
    stale: set[str] = field(default_factory=set)
    whole: bool = False  # rewrite every part of the year as one group (and cut it again)


def _cut_again(parts: dict[str, Path]) -> bool:
    """Should the year be cut again: would its rows fit in fewer parts (removed nights leave
    parts short, and a rewrite only ever cuts the part of a changed target), or does a part
    of several targets hold more than :data:`PART_ROWS` rows (cut under a larger bound)? By
    whole parts, in order: the cut by targets packs at least as tightly."""
    import pyarrow.parquet as pq

    rows = []
    for first in sorted(parts):
        meta = pq.read_metadata(parts[first])
        records = unpacked_records(partition_metadata(meta.schema.to_arrow_schema()))
        if meta.num_rows > PART_ROWS and len({r["target"] for r in records}) > 1:
            return True
        rows.append(meta.num_rows)
    needed, filled = 0, PART_ROWS
    for n in rows:
        if filled + n > PART_ROWS:
            needed, filled = needed + 1, 0
        filled += n
    return needed < len(rows)


def _stale_parts(parts: dict[str, Path]) -> set[str]:
    """The parts holding rows of targets past their range (a cut left short), by first."""
    stale = set()
    for first, last in part_ranges(parts):
        if last is None:
            continue
        records = unpacked_records(read_partition_metadata(parts[first]))
        if any(r["target"] >= last for r in records):
            stale.add(first)
    return stale


def _compact_year(lake: LakeDirectory, year: str, state: _Year) -> list[Path]:
    """Rewrite the parts of one year that hold a changed target: their rows minus the
    partitions of ``removed`` and of the per-night partitions, plus theirs, cut into parts
    of at most :data:`PART_ROWS` rows at target boundaries. A year holding format 3's
    target-year files is rewritten whole, those files merged. Rows whose types disagree
    leave their per-night files (and the parts they would replace) where they are."""
    new = [_prepared(lake, path, source) for path, source in sorted(state.per_night.items())]
    drop = state.removed | {_key_of(path, lake.images_dir) for path in state.per_night}
    ranges = part_ranges(state.parts) or [("", None)]
    if state.target_files or state.whole:  # the whole year, one group
        groups = [ranges]
    else:
        changed = {t[1]["target"] for t in new} | {k.split("\x1f", 1)[0] for k in state.removed}
        groups = [
            [r]
            for i, r in enumerate(ranges)
            if r[0] in state.stale or any(_in(t, r, i) for t in changed)
        ]
    written: list[Path] = []
    done: set[str] = set()  # targets whose rows are in place
    failed = False
    for group in groups:
        first, last = group[0][0], group[-1][1]
        inside = [t for t in new if _in(t[1]["target"], (first, last), ranges.index(group[0]))]
        try:
            written += _rewrite_parts(lake, year, state, group, inside, drop)
        except _Disagree:
            failed = True
            continue
        done |= {t[1]["target"] for t in inside}
    if not failed:  # every part holds its range only
        _remove_file(lake, lake.images_dir / f"{YEAR}={year}" / CUT_MARKER)
    for path, source in state.per_night.items():
        if _target_night(path, lake.images_dir)[0] not in done:
            if not isinstance(source, Path):  # kept for this compaction: its rows stay
                _write_per_night(source, path)
        elif isinstance(source, Path):
            _remove_file(lake, path)
    return written


def _write_per_night(table: pa.Table, path: Path) -> None:
    """A partition ``convert`` kept in memory, written as the per-night file it would have
    written (rows whose types disagree with their year's stay per-night, as in two steps)."""
    from nightlake.lake import write_parquet_atomic

    table = sorted_by(table, PARTITION_SORT)
    with _SHARED:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_parquet_atomic(table, path)


def _in(target: str, bounds: tuple[str, str | None], index: int) -> bool:
    """Is ``target`` in the range of the part ``index`` (the first takes all below it)?"""
    first, last = bounds
    return (index == 0 or target >= first) and (last is None or target < last)


def _rewrite_parts(
    lake: LakeDirectory,
    year: str,
    state: _Year,
    group: list[tuple[str, str | None]],
    new: list[tuple[pa.Table, dict[str, Any]]],
    drop: set[str],
) -> list[Path]:
    """Replace the parts of ``group`` (ranges) by parts of their rows and ``new``'s.

    New parts are written last first and the old ones deleted first first, so that at every
    moment each target's rows are read from exactly one file (the view reads a part's rows
    below the next part's first only, :func:`nightlake.lake.images_select_sql`). While rows
    move, the view names the parts it reads instead of globbing them, and each file that
    lands or goes rewrites the manifest: a view kept open reads the files it was built
    from until its connection is rebuilt on the manifest, never a new part beside an
    unbounded old one."""
    old = []
    for first, last in group:
        if first in state.parts:
            # a target-year file supersedes its target's rows in the year's parts
            old.append(_old_rows(lake, state.parts[first], drop, (first, last), state.target_files))
    old += [_old_rows(lake, f, drop) for f in state.target_files.values()]
    table, records = _sorted_rows([*old, *new])
    pieces = _cut(table, records)
    moving = [p[0] for p in pieces] != [f for f, _ in group if f in state.parts]

    def changed() -> None:  # cached views are rebuilt on the manifest's bytes
        if moving:
            with _SHARED:
                lake.write_manifest(lake.read_manifest())

    if moving:
        # rows move between files: the view bounds each part by the next while this is here
        from nightlake.lake import atomic_write_bytes

        atomic_write_bytes(lake.images_dir / f"{YEAR}={year}" / CUT_MARKER, b"")
        changed()
    outs = []
    for first, rows, recs in reversed(pieces):
        out = lake.images_dir / f"{YEAR}={year}" / f"{year}_{first}.parquet"
        outs += _write_compacted(lake, out, rows, recs)
        changed()
    keep = {out.name for out in outs}
    for first, _ in group:
        if first in state.parts and state.parts[first].name not in keep:
            _remove_file(lake, state.parts[first])
            changed()
    for f in state.target_files.values():
        _remove_file(lake, f)
        changed()
    return outs[::-1]


def _cut(table: pa.Table, records: list[dict[str, Any]]) -> list[tuple[str, pa.Table, list]]:
    """Sorted rows cut at target boundaries into parts of at most :data:`PART_ROWS`
    rows (a target with more is a part alone): (first target, rows, records) each."""
    import numpy as np
    import pyarrow.compute as pc

    if not table.num_rows:
        return []
    targets = table.column("target").to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, targets[1:] != targets[:-1]]).tolist() + [len(targets)]
    pieces, begin = [], 0
    for i in range(1, len(starts)):
        end, nxt = starts[i], starts[i + 1] if i + 1 < len(starts) else None
        if nxt is None or nxt - begin > PART_ROWS:
            first = str(targets[begin])
            names = set(pc.unique(table.column("target").slice(begin, end - begin)).to_pylist())
            piece = [r for r in records if r["target"] in names]
            pieces.append((first, table.slice(begin, end - begin), piece))
            begin = end
    return pieces


class _Disagree(Exception):
    """Rows of one compacted file whose column types cannot be unified."""


def _remove_file(lake: LakeDirectory, f: Path) -> None:
    """Delete a superseded file and the directories it leaves empty (not ``images``)."""
    f.unlink(missing_ok=True)
    with _SHARED:
        for directory in f.parents:
            if directory == lake.images_dir or lake.images_dir not in directory.parents:
                break
            try:
                directory.rmdir()
            except OSError:
                break


def _prepared(lake: LakeDirectory, path: Path, source: Any) -> tuple[pa.Table, dict[str, Any]]:
    """A per-night partition (its file, or its table from ``convert``) as a compacted file
    holds it: with ``target`` and ``night`` columns, and its record (keys and options of its
    path, so a record read from the compacted file alone says what partition it was)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nightlake.ingest.convert import written_options

    table = pq.read_table(source) if isinstance(source, Path) else source
    parts = path.relative_to(lake.images_dir).parts[:-1]
    record = partition_metadata(table.schema)
    record = {
        **record,
        **dict(p.split("=", 1) for p in parts),
        "options": written_options(record, path, lake.images_dir),
    }
    table = table.replace_schema_metadata(None)
    # the partition's values override a file's own columns of those names (as in the view),
    # in place, keeping their field metadata (the source's datatype, for astropy outputs)
    for name in ("target", "night"):
        value = pa.array([record[name]] * table.num_rows, pa.string())
        at = table.schema.get_field_index(name)  # -1: none (a partition's names are unique)
        if at >= 0:
            column = pa.field(name, pa.string(), metadata=table.schema.field(at).metadata)
            table = table.set_column(at, column, value)
        else:
            table = table.append_column(name, value)
    return table, record


def _old_rows(
    lake: LakeDirectory,
    file: Path,
    drop: set[str],
    bounds: tuple[str, str | None] | None = None,
    skip: Iterable[str] = (),
) -> tuple[pa.Table, list[dict[str, Any]]]:
    """A compacted file's rows and records minus the partitions of ``drop``, the targets of
    ``skip`` and (a part) those at or past the next part's first (``bounds``), with a
    ``target`` column (a target-year file's is its path's)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(file, partitioning=None)
    records = unpacked_records(partition_metadata(table.schema))
    table = table.replace_schema_metadata(None)
    if not is_year_file(file, lake.images_dir):
        value = file.parent.parent.name.split("=", 1)[1]
        table = _with_target(table, pa.array([value] * table.num_rows, pa.string()))
    keys = _row_keys(table, records[0]["options"]["partition_by"] if records else [])
    keep = pc.invert(pc.is_in(keys, pa.array(sorted(drop), pa.string())))
    last = bounds[1] if bounds else None
    if last is not None:
        keep = pc.and_(keep, pc.less(table.column("target"), last))
    if skip := sorted(skip):
        keep = pc.and_(keep, pc.invert(pc.is_in(table.column("target"), pa.array(skip))))
    records = [
        r
        for r in records
        if _record_key(r) not in drop
        and (last is None or r["target"] < last)
        and r["target"] not in skip
    ]
    # a new night's part keeps every row: no filtered copy of them
    return (table if pc.all(keep, skip_nulls=False).as_py() else table.filter(keep)), records


def _with_target(table: pa.Table, value: pa.Array) -> pa.Table:
    """A target-year file's rows with the ``target`` column a year file has: in place if the
    file holds its own, else last but ``night`` if ``night`` was added last."""
    if "target" in table.column_names:
        return table.set_column(table.column_names.index("target"), "target", value)
    return table.append_column("target", value)


def _sorted_rows(parts: list[tuple[pa.Table, list | dict]]) -> tuple[pa.Table, list]:
    """The rows of ``parts`` in one table sorted by :data:`SORT_COLUMNS`, and their
    records. Raises :class:`_Disagree` when their types cannot be unified."""
    import pyarrow as pa

    records = [r for _, rs in parts for r in (rs if isinstance(rs, list) else [rs])]
    tables = [t for t, _ in parts if t.num_rows]
    if not tables:
        return pa.table({"target": pa.array([], pa.string())}), []
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        raise _Disagree() from None  # those nights stay per-night; the view reads both
    table = sorted_by(table, SORT_COLUMNS)
    records.sort(key=lambda r: tuple(str(r.get(k, "")) for k in ("target", "night", "detector")))
    return table, records


def _write_compacted(lake: LakeDirectory, out: Path, table: pa.Table, records: list) -> list[Path]:
    """Write sorted rows with their records to ``out`` (temp file + rename): ``[out]``."""
    from nightlake.files import commit_temp
    from nightlake.lake import write_parquet_temp

    meta = {"format_version": LAKE_FORMAT_VERSION, "compacted": True, **_packed(records)}
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta, default=str).encode()})
    out.parent.mkdir(parents=True, exist_ok=True)
    commit_temp(write_parquet_temp(table, out, row_group_size=ROW_GROUP_ROWS), out)
    return [out]


def _key_of(path: Path, images_dir: Path) -> str:
    """A per-night partition's key: ``target\x1fnight`` or ``target\x1fnight\x1fdetector``."""
    return "\x1f".join(p.split("=", 1)[1] for p in path.relative_to(images_dir).parts[:-1])


def _record_key(record: dict[str, Any]) -> str:
    return "\x1f".join(str(record[k]) for k in record["options"]["partition_by"])


def _row_keys(table, levels: list[str]):
    """Each row's partition key (``levels``: the partition's), as :func:`_key_of` spells it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = [table.column("target"), table.column("night")]
    if "detector" in levels:
        keys.append(pc.cast(table.column("detector"), pa.string()))
    return pc.binary_join_element_wise(*keys, "\x1f")


def _target_night(path: Path, images_dir: Path) -> tuple[str, str]:
    """(target, night) of a per-night path, (target, year) of a target-year file's."""
    parts = path.relative_to(images_dir).parts
    return parts[0].split("=", 1)[1], parts[1].split("=", 1)[1]


def _year_of_path(path: Path, images_dir: Path) -> str:
    return year_of(_target_night(path, images_dir)[1])


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
