"""ECSV collections → lake partitions: incremental, idempotent, atomic per partition.

The steps of :func:`convert`, all under the lake's writer lock, each a function; reading a
source and writing a partition are tasks, run on a thread per core here or on the workers of an
:class:`~nightlake.scaleout.Executor` (``--executor dask``), the rest is the client's:

1. :func:`_plan`: compare each input file with the fingerprints recorded in the partitions
   already in the lake (size + mtime, then content hash): unchanged sources are not even
   read; a changed one brings the other recorded sources of every partition it feeds, so a
   rewritten partition is whole;
2. :func:`_read`: read those, split their rows by target/night(/detector), and derive
   ``obs_time`` from ``mjd`` (ERFA), a task per source (:func:`_read_one`; the rows stay where
   they were read);
3. :func:`_remove_gone`: a partition no input has rows for any more goes;
4. :func:`_merge`: the partitions to write, each with every source read that feeds it;
5. :func:`_write`: a task per partition (:func:`_write_job`): when two sources (a per-night
   file, ``joined.collection``, a sharded tree) give it rows, they must be identical, else it
   fails naming both; then rename case-colliding columns, sort by detector, visit, mjd, record
   provenance, write a temp file and rename it into place. Then the client writes the
   manifest.

A bad input never stops the others: it is reported, and no partition it feeds is written.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from functools import lru_cache, wraps
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nightlake import __version__
from nightlake.columns import unique_names
from nightlake.errors import InputError, LakeError, NightlakeError, UsageError, one_line
from nightlake.files import commit_temp, compare_fingerprint, temp_path_for
from nightlake.ingest.compact import (
    LAKE_FORMAT_VERSION,
    Footers,
    compact_locked,
    will_compact,
)
from nightlake.ingest.ecsv import EcsvTable, read_ecsv
from nightlake.ingest.sources import SourceFile, describe, find_inputs, partition_keys
from nightlake.ingest.taitime import mjd_to_timestamp
from nightlake.lake import (
    METADATA_KEY,
    PARTITION_SORT,
    LakeDirectory,
    sorted_by,
    write_parquet_temp,
)
from nightlake.scaleout import Executor, cores, threaded

PARTITION_LEVELS = ("target", "night", "detector")
TIME_SCALES = ("tai", "utc")
#: 2: partitions and nightlake.json record the partition-shaping options (``options``);
#: 3: a column read from an astropy Time records its attributes (``astropy_time``, JSON) in
#: its field metadata, where 2 had only ``astropy_time_format``/``astropy_time_scale``
FORMAT_VERSION = 3
#: what a lake written before options were recorded (format 1) is taken to have used: the
#: defaults of then, with the partition levels its nightlake.json names
OLD_OPTIONS = {"partition_by": ["target", "night"], "time_scale": "tai"}

#: progress(stage, done, total, label) — stage is "read" or "write"
ProgressFn = Callable[[str, int, int, str], None]


def prefer_jemalloc() -> str:
    """Make jemalloc pyarrow's default memory pool, unless ``ARROW_DEFAULT_MEMORY_POOL``
    chooses one or this pyarrow lacks it; returns the pool in use.

    A process-wide setting, so only ``nightlake convert`` (which owns its process) calls it.
    pyarrow's default, mimalloc, hands freed pages back and takes them again as transparent
    huge pages, each zeroed by the kernel: a quarter of convert's CPU went to
    ``clear_page_erms`` (perf); jemalloc keeps its pages (docs/design.md).
    """
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        try:
            pa.set_memory_pool(pa.jemalloc_memory_pool())
        except NotImplementedError:  # a pyarrow built without jemalloc
            pass
        else:  # and the worker processes of a local Dask cluster it starts
            os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "jemalloc"
    return pa.default_memory_pool().backend_name


@dataclass(frozen=True)
class ConvertOptions:
    partition_by: tuple[str, ...] = ("target", "night")
    time_scale: str = "tai"
    force: bool = False
    target: str | None = None
    night: str | None = None
    lock_timeout: float = 30.0

    def shaping(self) -> dict[str, Any]:
        """The options that change what a partition holds, as recorded in the lake: a
        partition written with others is stale. (A new such option belongs here.)"""
        return {"partition_by": list(self.partition_by), "time_scale": self.time_scale}

    def __post_init__(self) -> None:
        if self.partition_by not in (("target", "night"), ("target", "night", "detector")):
            raise UsageError(
                f"--partition-by must be 'target,night' or 'target,night,detector', "
                f"not {','.join(self.partition_by)!r}"
            )
        if self.time_scale not in TIME_SCALES:
            raise UsageError(
                f"--time-scale must be one of {', '.join(TIME_SCALES)}, not {self.time_scale!r}"
            )


@dataclass
class ConvertReport:
    written: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    unchanged: int = 0
    failed: list[tuple[str, NightlakeError]] = field(default_factory=list)  # (input, error)
    renames: dict[str, str] = field(default_factory=dict)  # new name -> original name
    rows_written: int = 0
    sources_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass
class _Contribution:
    """The rows one source gives one partition."""

    source: SourceFile
    ecsv: EcsvTable
    rows: pa.Table


@dataclass
class _Read:
    """What the client knows of one source read: the partitions it feeds, or its error.
    ``rows`` is the :class:`_SourceRead` itself (read here) or a handle to it (read on a
    worker, where it stays until the partitions are written)."""

    source: SourceFile
    keys: list[tuple[str, ...]]
    error: NightlakeError | None
    rows: Any = None


#: partition key (target, night[, detector]) -> the reads of the sources that give it rows
Contributions = dict[tuple[str, ...], list[_Read]]
#: a partition to write: its key and the reads (``_Read.rows``) of every source feeding it
_Job = tuple[tuple[str, ...], list[Any]]


@dataclass
class _Plan:
    """What a run must read and may rewrite, decided from the lake's record alone."""

    index: _LakeIndex
    changed: set[Path]  # sources whose partitions are rewritten
    affected: set[Path]  # partitions a changed source fed when the lake was last written
    to_read: list[SourceFile]  # changed sources, and the other sources of affected partitions
    unchanged: int  # inputs not read


@dataclass
class _Refused:
    """A partition not written: its sources disagree, or one of them failed."""

    error: NightlakeError


@dataclass
class _PartitionRows:
    """A partition to write: the rows of ``chosen`` (one logical source), and every source
    of ``parts`` as provenance."""

    key: tuple[str, ...]
    chosen: list[_Contribution]
    parts: list[_Contribution]


def convert(
    lake: LakeDirectory,
    sources: Iterable[str | os.PathLike[str]],
    options: ConvertOptions = ConvertOptions(),
    progress: ProgressFn | None = None,
    executor: Executor | None = None,
) -> ConvertReport:
    """Convert ``sources`` into ``lake``; see the module docstring for the steps.

    ``executor`` runs the read and write tasks (``None``: this process, a thread per core).
    The lock, the plan and the manifest stay here, so two converts still exclude each other.
    """
    report = ConvertReport()
    files, errors = find_inputs(list(sources))
    report.failed.extend((exc.path or "<input>", exc) for exc in errors)
    with lake.locked(options.lock_timeout):
        _check_writable(lake)
        if executor is not None:
            executor.check_visible(lake.path, *sorted({f.path.parent for f in files}))
        _clean_temp_files(lake)
        manifest = _check_options(lake, options)
        plan = _plan(lake, files, options)
        report.unchanged = plan.unchanged
        contributions = _read(lake, plan, options, report, progress, executor)
        try:
            _remove_gone(plan, contributions, lake, options, report)
            todo = _merge(lake, plan, contributions, options)
            # partitions the compaction below takes are handed to it, not written per night
            # (on an executor they are written where they are encoded, then compacted here)
            direct = executor is None and will_compact(
                lake, [partition_path(lake, options.partition_by, key) for key, _ in todo]
            )
            fresh = _write(
                lake, manifest, plan.index, todo, options, report, progress, executor, direct
            )
            if executor is not None:
                _clean_temp_files(lake)  # of a worker that died mid-write (its task was rerun)
        finally:
            if executor is not None:
                executor.release(r.rows for reads in contributions.values() for r in reads)
        # if the lake is compacted, or these partitions make it so
        compact_locked(lake, report.written + report.removed, fresh=fresh)
        Footers.refresh(lake)
    return report


# -- plan -----------------------------------------------------------------------------------
def _plan(lake: LakeDirectory, files: list[SourceFile], options: ConvertOptions) -> _Plan:
    """Which inputs changed since the lake recorded them, and what must be read to rewrite
    every partition they feed whole."""
    index = _LakeIndex.load(lake)
    # a source is changed too when a partition it feeds was written with other options
    # (a run with new options was cut short, or converted only some sources)
    redo = index.sources_written_otherwise(options.shaping())
    changed = {
        f.path for f in files if options.force or f.path in redo or not index.is_current(f.path)
    }
    affected = set(index.partitions_fed_by(changed))
    to_read = {f.path: f for f in files if f.path in changed}
    for partition in affected:
        for path in index.sources_of(partition):
            if path not in to_read and path.exists():
                to_read[path] = describe(path)
    return _Plan(
        index=index,
        changed=changed,
        affected=affected,
        to_read=sorted(to_read.values(), key=lambda f: f.path),
        unchanged=sum(f.path not in changed for f in files),
    )


# -- the lake's record of what it was built from ------------------------------------------------
@dataclass
class _LakeIndex:
    sources: dict[Path, dict[str, Any]]  # recorded fingerprint by source path
    #: sources whose partitions record different fingerprints (a run killed after writing
    #: some of the files they feed): changed, whatever the file is now
    mixed: set[Path]
    partitions: dict[Path, list[Path]]  # partition file -> its source paths
    schemas: dict[Path, tuple]  # partition file -> its column names and types
    options: dict[Path, dict[str, Any]]  # partition file -> the options it was written with

    @classmethod
    def load(cls, lake: LakeDirectory) -> _LakeIndex:
        sources: dict[Path, dict[str, Any]] = {}
        partitions: dict[Path, list[Path]] = {}
        schemas: dict[Path, tuple] = {}
        options: dict[Path, dict[str, Any]] = {}
        mixed: set[Path] = set()
        from nightlake.ingest.compact import partition_records

        for part, signature, meta, _ in partition_records(lake):  # compacted ones too
            schemas[part] = signature
            options[part] = written_options(meta, part, lake.images_dir)
            paths = []
            for fp in meta.get("sources", []):
                path = Path(fp["path"])
                if sources.setdefault(path, fp) != fp:
                    mixed.add(path)
                paths.append(path)
            partitions[part] = paths
        return cls(sources, mixed, partitions, schemas, options)

    def sources_written_otherwise(self, shaping: dict[str, Any]) -> set[Path]:
        return {
            src
            for part, opts in self.options.items()
            if opts != shaping
            for src in self.partitions[part]
        }

    def is_current(self, path: Path) -> bool:
        recorded = self.sources.get(path)
        return (
            recorded is not None
            and path not in self.mixed
            and compare_fingerprint(recorded)[0] == "ok"
        )

    def partitions_fed_by(self, paths: set[Path]) -> list[Path]:
        return [p for p, srcs in self.partitions.items() if paths.intersection(srcs)]

    def sources_of(self, partition: Path) -> list[Path]:
        return self.partitions.get(partition, [])


def written_options(meta: dict[str, Any], part: Path, images_dir: Path) -> dict[str, Any]:
    """The shaping options a partition was written with (format 1 recorded only
    ``time_scale``; its levels are those of its path)."""
    if "options" in meta:
        return meta["options"]
    levels = [p.split("=", 1)[0] for p in part.relative_to(images_dir).parts[:-1]]
    return {"partition_by": levels, "time_scale": meta.get("time_scale", OLD_OPTIONS["time_scale"])}


def lake_options(manifest: dict[str, Any]) -> dict[str, Any]:
    """The shaping options of the last convert of a lake (see :data:`OLD_OPTIONS`)."""
    if "options" in manifest:
        return manifest["options"]
    return {
        **OLD_OPTIONS,
        "partition_by": manifest.get("partition_by", OLD_OPTIONS["partition_by"]),
    }


def per_schema(fn: Callable[[pa.Schema], Any]) -> Callable[[pa.Schema], Any]:
    """``fn(schema)``, remembered for the last schema it was given (equal, field metadata
    included): a convert's partitions share their source's schema, and each walk of one
    costs pyarrow 0.1–0.2 ms (about 50 ms for a joined.collection's 240 partitions)."""
    last: list[tuple[pa.Schema, Any] | None] = [None]

    @wraps(fn)
    def remembered(schema: pa.Schema) -> Any:
        seen = last[0]  # read once: another thread may replace it meanwhile
        if seen is not None and seen[0].equals(schema, check_metadata=True):
            return seen[1]
        result = fn(schema)
        last[0] = (schema, result)
        return result

    return remembered


@per_schema
def schema_signature(schema: pa.Schema) -> tuple:
    return tuple((f.name, str(f.type)) for f in schema)


# -- read -----------------------------------------------------------------------------------
def _read(
    lake: LakeDirectory,
    plan: _Plan,
    options: ConvertOptions,
    report: ConvertReport,
    progress: ProgressFn | None,
    executor: Executor | None,
) -> Contributions:
    """Every source the plan names read and split by partition, with ``obs_time``.

    A changed source can land in a partition that other, unchanged sources already feed (a
    new shard, a joined.collection beside per-night files): those are read too, so the
    partition is checked against them and stays whole.
    """
    contributions = _read_split(plan.to_read, options, report, progress, executor)
    read = {f.path for f in plan.to_read}
    siblings = {
        path: describe(path)
        for key in contributions
        for path in plan.index.sources_of(partition_path(lake, options.partition_by, key))
        if path not in read and path.exists()
    }
    more = _read_split(
        sorted(siblings.values(), key=lambda f: f.path), options, report, None, executor
    )
    for key, parts in more.items():
        contributions[key].extend(parts)
    return contributions


@dataclass
class _SourceRead:
    """One source read and split (its rows by partition, with ``obs_time``), or why it could
    not be."""

    source: SourceFile
    parts: dict[tuple[str, ...], _Contribution] = field(default_factory=dict)
    error: NightlakeError | None = None


def _read_one(source: SourceFile, options: ConvertOptions) -> _SourceRead:
    """A task: read one source and split its rows by partition."""
    try:
        ecsv = read_ecsv(source.path)
        parts = {
            key: _Contribution(source, ecsv, rows)
            for key, rows in _split(source, ecsv.table, options)
        }
        add_obs_time(parts.values(), options.time_scale)
        return _SourceRead(source, parts)
    except NightlakeError as exc:
        return _SourceRead(source, error=exc)
    except Exception as exc:  # a case no check foresaw must still fail this file only
        error = InputError(source.path, f"cannot convert ({type(exc).__name__}: {one_line(exc)})")
        error.__cause__ = exc
        return _SourceRead(source, error=error)


def _summary(read: _SourceRead) -> _Read:
    return _Read(read.source, list(read.parts), read.error)


def _read_split(
    files: list[SourceFile],
    options: ConvertOptions,
    report: ConvertReport,
    progress: ProgressFn | None,
    executor: Executor | None,
) -> Contributions:
    """Read and split ``files``; a file that fails is reported."""
    contributions: Contributions = defaultdict(list)
    for read in _read_all(files, options, progress, executor):
        if read.error is not None:
            report.failed.append((str(read.source.path), read.error))
            continue
        report.sources_read += 1
        for key in read.keys:
            contributions[key].append(read)
    return contributions


def _read_all(
    files: list[SourceFile],
    options: ConvertOptions,
    progress: ProgressFn | None,
    executor: Executor | None,
) -> Iterator[_Read]:
    """:func:`_read_one` of each file, in order: on a thread per core here, or as tasks of
    ``executor`` whose results stay on its workers."""
    if executor is None:
        for i, read in enumerate(threaded(lambda source: _read_one(source, options), files), 1):
            if progress:
                progress("read", i, len(files), read.source.path.name)
            summary = _summary(read)
            summary.rows = read
            yield summary
        return
    handles = executor.keep(_read_one, files, options=options)
    count = iter(range(1, len(files) + 1))

    def done(i: int) -> None:
        if progress:
            progress("read", next(count), len(files), files[i].path.name)

    for summary, handle in zip(executor.map(_summary, handles, done=done), handles):
        summary.rows = handle
        yield summary


def _split(
    source: SourceFile, table: pa.Table, options: ConvertOptions
) -> list[tuple[tuple[str, ...], pa.Table]]:
    """Rows grouped by partition key: slices where each partition is one run of rows, else
    after one sort (never a scan of the whole table per key)."""
    targets, nights = partition_keys(source, table, target=options.target, night=options.night)
    keys = [targets, nights]
    if "detector" in options.partition_by:
        if "detector" not in table.column_names:
            raise InputError(source.path, "--partition-by …,detector needs a 'detector' column")
        keys.append(pc.cast(table.column("detector"), pa.string()).combine_chunks())
    uniques = [pc.unique(values) for values in keys]
    for name, values in zip(PARTITION_LEVELS, uniques):
        for value in values.to_pylist():
            if _BAD_KEY.search(value):
                raise InputError(
                    source.path,
                    f"a {name} value cannot name a directory "
                    "(empty, or contains '/', '\\\\', '=' or a control character)",
                )
    if table.num_rows == 0:
        return []
    if all(len(u) == 1 for u in uniques):  # one partition (a per-night file, a shard):
        return [(tuple(u[0].as_py() for u in uniques), table)]  # sorted as it is written
    joined = pc.binary_join_element_wise(*keys, "\x1f")
    codes = (
        pc.dictionary_encode(joined).combine_chunks()
        if isinstance(joined, pa.ChunkedArray)
        else pc.dictionary_encode(joined)
    )
    labels = codes.dictionary.to_pylist()
    idx = codes.indices.to_numpy(zero_copy_only=False)
    runs = _runs(idx)
    if len(runs) > len(labels):
        # Rows of a partition are apart: one sort by (partition, detector, visit, mjd) brings
        # each together, in lake order. (Where each partition is one run already — a
        # joined.collection is its nights one after another — slices need no copy, and each
        # is sorted as it is written, on the writing threads.)
        sort_keys = [(c, "ascending") for c in PARTITION_SORT if c in table.column_names]
        keyed = pa.table(
            {"__partition": codes.indices, **{c: table.column(c) for c, _ in sort_keys}}
        )
        order = pc.sort_indices(keyed, sort_keys=[("__partition", "ascending"), *sort_keys])
        table = table.take(order)  # never in order already: its partitions were apart
        idx = idx[order.to_numpy()]
        runs = _runs(idx)
    return [(tuple(labels[idx[s]].split("\x1f")), table.slice(s, e - s)) for s, e in runs]


def _runs(codes: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of equal codes."""
    bounds = np.flatnonzero(np.diff(codes)) + 1
    return list(
        zip(np.concatenate([[0], bounds]).tolist(), np.concatenate([bounds, [len(codes)]]).tolist())
    )


# a partition value names a directory: not empty, no separator, '=', leading dot or control
# character (the unit separator joins the values of a row's key while splitting)
_BAD_KEY = re.compile(r"[/\\=\x00-\x1f]|^\.|^$")


def add_obs_time(contributions: Iterable[_Contribution], time_scale: str) -> None:
    """Give every contribution with a numeric ``mjd`` (and no ``obs_time`` of its own) an
    ``obs_time`` column (UTC) derived from ``mjd`` in ``time_scale``.

    ERFA alone (:mod:`nightlake.ingest.taitime`), not astropy: astropy's import would be most
    of a small convert's time, for the same values.
    """
    todo = [
        c
        for c in contributions
        if "obs_time" not in c.rows.column_names
        and "mjd" in c.rows.column_names
        and (
            pa.types.is_floating(c.rows.schema.field("mjd").type)
            or pa.types.is_integer(c.rows.schema.field("mjd").type)
        )
    ]
    if not todo:
        return
    mjd = pa.chunked_array(
        [chunk for c in todo for chunk in c.rows.column("mjd").cast(pa.float64()).chunks],
        pa.float64(),
    )
    stamps = mjd_to_timestamp(mjd, time_scale)
    field = pa.field(
        "obs_time",
        pa.timestamp("us"),
        metadata={
            "description": f"observation time (UTC) from mjd ({time_scale.upper()})",
            "derived_from": "mjd",
            "time_scale": time_scale,
        },
    )
    start = 0
    for c in todo:
        c.rows = c.rows.append_column(field, stamps.slice(start, c.rows.num_rows))
        start += c.rows.num_rows


# -- merge ----------------------------------------------------------------------------------
def _merge(
    lake: LakeDirectory, plan: _Plan, contributions: Contributions, options: ConvertOptions
) -> list[_Job]:
    """The partitions to write, each with the reads of every source that feeds it (which
    rows go in, :func:`_merge_sources`, is decided where the partition is written)."""
    todo = []
    for key, reads in sorted(contributions.items()):
        path = partition_path(lake, options.partition_by, key)
        touched = any(r.source.path in plan.changed for r in reads) or bool(
            set(plan.index.sources_of(path)) & plan.changed
        )
        if touched:  # else read only as a sibling, and nothing of it changed
            todo.append((key, [r.rows for r in reads]))
    return todo


def _failed_paths(report: ConvertReport) -> set[Path]:
    # realpath: a failed input may be a symlink loop, which Path.resolve refuses
    return {Path(os.path.realpath(p)) for p, _ in report.failed}


def _remove_gone(
    plan: _Plan,
    contributions: Contributions,
    lake: LakeDirectory,
    options: ConvertOptions,
    report: ConvertReport,
) -> None:
    """Remove the partitions whose changed sources no longer have rows for them, when no
    other source does either: their rows are gone from the inputs. A partition one of whose
    sources failed stays (its rows are unknown, not gone)."""
    kept = {partition_path(lake, options.partition_by, key) for key in contributions}
    failed = _failed_paths(report)
    for stale in sorted(plan.affected - kept):
        if not set(plan.index.sources_of(stale)) & failed:
            stale.unlink(missing_ok=True)
            report.removed.append(stale)


def same_content(a: pa.Table, b: pa.Table) -> bool:
    """Same rows and columns in any order (NaN equals NaN; metadata ignored; an all-null
    column — what unpacking a kbmod table gives for a column that was all masked — equals
    any all-null column)."""
    if a.num_rows != b.num_rows or set(a.column_names) != set(b.column_names):
        return False
    names = sorted(a.column_names)
    a, b = a.select(names), b.select(names)
    columns = []
    for name, col in zip(names, b.columns):
        want = a.schema.field(name).type
        if col.type != want:
            try:
                col = col.cast(want)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return False
        columns.append(col)
    b = pa.Table.from_arrays(columns, names=names)
    return _canonical(a).equals(_canonical(b))


def _merge_sources(
    key: tuple[str, ...], parts: list[_Contribution], failed: set[Path]
) -> list[_Contribution]:
    """The rows to write: one logical source's (a file, or the shards of one target/night).

    Every other source of the partition must hold the same rows; one that disagrees is an
    error naming both.
    """
    broken = [c.source.path for c in parts if c.source.path in failed]
    if broken:
        raise InputError(broken[0], f"partition {'/'.join(key)} not written: an input failed")
    groups: dict[str, list[_Contribution]] = defaultdict(list)
    for c in parts:
        groups[c.source.group].append(c)
    if len(groups) == 1:
        return parts
    tables = {
        g: pa.concat_tables([c.rows for c in cs], promote_options="permissive")
        for g, cs in groups.items()
    }
    names = list(tables)
    first = tables[names[0]]
    for other in names[1:]:
        if not same_content(first, tables[other]):
            a, b = groups[names[0]][0].source.path, groups[other][0].source.path
            detail = (
                f"{first.num_rows} vs {tables[other].num_rows} rows"
                if first.num_rows != tables[other].num_rows
                else "rows differ"
            )
            raise InputError(
                a,
                f"disagrees with {b} on {'/'.join(key)} ({detail}); convert one "
                "of them, or make them identical",
            )
    return next(iter(groups.values()))  # all identical: keep the first


_BITS = {16: pa.uint16(), 32: pa.uint32(), 64: pa.uint64()}


def _canonical(table: pa.Table) -> pa.Table:
    """Rows in a fixed order, floats as bit patterns (NaN equals NaN), no metadata: content."""
    columns = []
    for col in table.columns:
        if pa.types.is_floating(col.type):
            bits = _BITS[col.type.bit_width]
            col = pa.chunked_array([chunk.view(bits) for chunk in col.chunks], bits)
        columns.append(col)
    table = pa.Table.from_arrays(columns, names=table.column_names)
    sortable = [
        (n, "ascending")
        for n in table.column_names
        if not (
            pa.types.is_list(table.schema.field(n).type)
            or pa.types.is_fixed_size_list(table.schema.field(n).type)
            or isinstance(table.schema.field(n).type, pa.ExtensionType)
        )
    ]
    return table.sort_by(sortable) if sortable else table


# -- write ----------------------------------------------------------------------------------
def _write(
    lake: LakeDirectory,
    manifest: dict[str, Any],
    index: _LakeIndex,
    todo: list[_Job],
    options: ConvertOptions,
    report: ConvertReport,
    progress: ProgressFn | None,
    executor: Executor | None,
    direct: bool = False,
) -> dict[Path, pa.Table]:
    """Write every partition of ``todo`` (:func:`_write_job`), then the manifest. ``direct``:
    keep the partitions' tables instead (the compaction takes them); returns those."""
    schemas = {p: sig for p, sig in index.schemas.items() if p not in report.removed}
    if todo and manifest.get("uniform_schema"):
        # readers meanwhile must not assume one schema for partitions about to change
        lake.write_manifest({**manifest, "uniform_schema": False})
    failed = _failed_paths(report)
    fresh = {}
    for key, outcome in _write_all(lake, todo, options, failed, progress, executor, direct):
        if isinstance(outcome, _Refused):
            report.failed.append(("/".join(key), outcome.error))
            continue
        target = partition_path(lake, options.partition_by, key)  # as the lake names it here
        report.written.append(target)
        report.rows_written += outcome.rows
        report.renames.update(outcome.renames)
        schemas[target] = outcome.signature
        if outcome.table is not None:
            fresh[target] = outcome.table
    lake.write_manifest({**manifest, "uniform_schema": len(set(schemas.values())) <= 1})
    return fresh


def _write_all(
    lake: LakeDirectory,
    todo: list[_Job],
    options: ConvertOptions,
    failed: set[Path],
    progress: ProgressFn | None,
    executor: Executor | None,
    direct: bool = False,
) -> Iterator[tuple[tuple[str, ...], _Written | _Refused]]:
    """:func:`_write_job` of each partition, in order, every written one in place.

    Here, partitions are encoded on a thread per core; making each durable and moving it
    into place (fsync, rename, fsync) waits on the disk, on threads of its own, so encoding
    never waits for a slow fsync (a network disk). On an executor, each task does both.
    """
    place = str(lake.path.resolve())  # a worker's working directory is not ours
    labels = ["/".join(key) for key, _ in todo]
    if executor is not None:
        count = iter(range(1, len(todo) + 1))

        def done(i: int) -> None:
            if progress:
                progress("write", next(count), len(todo), labels[i])

        outcomes = executor.map(
            _write_job, todo, done=done, lake=place, options=options, failed=failed, commit=True
        )
        yield from zip((key for key, _ in todo), outcomes)
        return
    committer = ThreadPoolExecutor(4 * cores(), thread_name_prefix="nightlake-commit")

    def write_one(job: _Job):
        outcome = _write_job(
            job, lake=place, options=options, failed=failed, commit=False, keep=direct
        )
        if isinstance(outcome, _Refused) or outcome.tmp is None:
            return outcome, None
        return outcome, committer.submit(commit_temp, outcome.tmp, outcome.target)

    # a kept table of one source is bookkeeping, not encoding: threads would contend for
    # the GIL (sources compared, :func:`_merge_sources`, are work for every core)
    if direct and all(len(reads) == 1 for _, reads in todo):
        results = (write_one(job) for job in todo)
    else:
        results = threaded(write_one, todo)
    with committer, closing(results):  # on failure: no new writes, started ones committed
        for done, ((key, _), (outcome, committed)) in enumerate(zip(todo, results), 1):
            if committed is not None:
                committed.result()
            if progress:
                progress("write", done, len(todo), labels[done - 1])
            yield key, outcome


def _write_job(
    job: _Job,
    *,
    lake: str,
    options: ConvertOptions,
    failed: set[Path],
    commit: bool,
    keep: bool = False,
) -> _Written | _Refused:
    """A task: the rows one partition takes from its sources' reads (:func:`_merge_sources`),
    written to a temp file beside its place, and with ``commit`` moved into place; with
    ``keep``, its table kept instead (for the compaction)."""
    key, reads = job
    parts = [read.parts[key] for read in reads]
    try:
        chosen = _merge_sources(key, parts, failed)
    except NightlakeError as exc:
        return _Refused(exc)
    written = _write_partition(
        LakeDirectory(lake), options, _PartitionRows(key, chosen, parts), keep
    )
    if commit:
        commit_temp(written.tmp, written.target)
    return written


def _write_partition(
    lake: LakeDirectory, options: ConvertOptions, rows: _PartitionRows, keep: bool = False
) -> _Written:
    """Write one partition to a temp file beside its place (``keep``: return its table)."""
    key, chosen, parts = rows.key, rows.chosen, rows.parts
    table = pa.concat_tables([c.rows for c in chosen], promote_options="permissive")
    table, renames = deduplicate_names(table)
    # Sorted here, not as read: the sorted copy lives only while it is written, so its memory
    # serves the next partition (rows a file's split had to sort arrive in order: no copy).
    # A kept table is not: the compaction sorts it with its year (a stable sort, so the
    # order, and the bytes, are those of sorting twice)
    if not keep:
        table = sorted_by(table, PARTITION_SORT)
    sources = sorted({c.source.path: c.ecsv for c in parts}.items())
    first_ecsv = chosen[0].ecsv
    meta = {
        "format_version": FORMAT_VERSION,
        "nightlake_version": __version__,
        "time_scale": options.time_scale,
        "options": options.shaping(),
        **dict(zip(options.partition_by, key)),
        "rows": table.num_rows,
        "sources": [e.fingerprint for _, e in sources],
        "renames": renames,
        "table_meta": first_ecsv.table_meta,
        "unpacked_columns": first_ecsv.unpacked,
        "ecsv_header": [e.header_text for _, e in sources],
    }
    signature = schema_signature(table.schema)  # before its metadata: one per source
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta, default=str).encode()})
    target = partition_path(lake, options.partition_by, key)
    if keep:
        return _Written(target, None, table.num_rows, renames, signature, table)
    tmp = write_parquet_temp(table, target)
    return _Written(target, tmp, table.num_rows, renames, signature)


@dataclass
class _Written:
    """A partition written to a temp file beside its place, to be committed (or its table,
    kept for the compaction)."""

    target: Path
    tmp: Path | None
    rows: int
    renames: dict[str, str]
    signature: tuple
    table: pa.Table | None = None


def partition_path(lake: LakeDirectory, levels: tuple[str, ...], key: tuple[str, ...]) -> Path:
    """``images/target=A0a/night=20190402[/detector=5]/20190402_A0a[_5].parquet``."""
    directory = lake.images_dir.joinpath(*(f"{lvl}={val}" for lvl, val in zip(levels, key)))
    return directory / ("_".join((key[1], key[0], *key[2:])) + ".parquet")


def deduplicate_names(table: pa.Table) -> tuple[pa.Table, dict[str, str]]:
    """Rename case-insensitive duplicates by :func:`nightlake.columns.unique_names`:
    ``AIRMASS`` → ``AIRMASS_1``. A renamed column keeps its original name in its field
    metadata (``original_name``).
    """
    schema, renames = _renamed(table.schema)
    if not renames:
        return table, {}
    return (
        pa.Table.from_batches(table.rename_columns(schema.names).to_batches(), schema=schema),
        dict(renames),
    )


@per_schema
def _renamed(schema: pa.Schema) -> tuple[pa.Schema, tuple[tuple[str, str], ...]]:
    """The schema after :func:`deduplicate_names`, and (new, original) for each rename."""
    new_names, renames = _unique_names(tuple(schema.names))
    for i, (new, old) in enumerate(zip(new_names, schema.names)):
        if new != old:
            f = schema.field(i)
            md = dict(f.metadata or {})
            md[b"original_name"] = old.encode()
            schema = schema.set(i, pa.field(new, f.type, f.nullable, md))
    return schema, renames


@lru_cache(maxsize=64)
def _unique_names(names: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The names after :func:`deduplicate_names`, and (new, original) for each renamed one."""
    new_names = tuple(unique_names(names))
    return new_names, tuple((new, old) for new, old in zip(new_names, names) if new != old)


# -- lake checks ----------------------------------------------------------------------------
def _check_writable(lake: LakeDirectory) -> None:
    try:
        lake.images_dir.mkdir(parents=True, exist_ok=True)
        probe = temp_path_for(lake.images_dir / "write-probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise LakeError(f"{lake.path}: lake not writable ({exc.strerror})") from None


def _clean_temp_files(lake: LakeDirectory) -> None:
    """Temp files left by a writer that crashed (we hold the lock: nobody is writing)."""
    for tmp in lake.images_dir.rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def _check_options(lake: LakeDirectory, options: ConvertOptions) -> dict[str, Any]:
    """Refuse options other than the lake's unless ``--force``; record the new ones before
    any partition is written (so that a run cut short leaves the others stale), and return
    the manifest."""
    manifest = lake.read_manifest()
    version = manifest.get("format_version", 1)
    if isinstance(version, int) and version > LAKE_FORMAT_VERSION:
        raise LakeError(
            f"{lake.manifest_path}: lake format {version} is newer than this "
            f"nightlake reads ({LAKE_FORMAT_VERSION}); upgrade nightlake"
        )
    wanted = options.shaping()
    had = lake_options(manifest)
    has_partitions = bool(lake.image_files())
    if has_partitions and had != wanted:
        if not options.force:
            old = " ".join(option_text(k, had[k]) for k in wanted if had.get(k) != wanted[k])
            new = " ".join(option_text(k, wanted[k]) for k in wanted if had.get(k) != wanted[k])
            raise UsageError(
                f"{lake.path}: the lake was converted with {old}; use {old}, or "
                f"--force to rewrite its partitions with {new}"
            )
        if had["partition_by"] != wanted["partition_by"]:
            for part in lake.image_files():  # another layout: every file moves
                part.unlink()
    manifest = {
        **manifest,
        "format_version": max(version, FORMAT_VERSION)
        if isinstance(version, int)
        else FORMAT_VERSION,
        "partition_by": wanted["partition_by"],
        "options": wanted,
    }
    if manifest != lake.read_manifest():
        lake.write_manifest(manifest)
    return manifest


def option_text(name: str, value: Any) -> str:
    """``--time-scale tai``: an option as typed."""
    shown = ",".join(value) if isinstance(value, list) else value
    return f"--{name.replace('_', '-')} {shown}"
