"""The lake on disk: layout, locking, the manifest, the partition files, atomic Parquet writes.

::

    LAKE/
      .nightlake.lock                       writers (convert, sync) hold this filelock;
                                            readers never take it (nor create it)
      nightlake.json                        the manifest: lake-wide settings
      .nightlake-footers.json               a cache of each image file's footer, by file
                                            stamp, written by convert and compact, read by
                                            whatever reads the partitions' records (any form
                                            of it may be deleted;
                                            nightlake.ingest.compact.Footers)
      images/
        target=A0a/
          night=20190402/
            20190402_A0a.parquet            one file per target/night (zstd, sorted by
                                            detector, visit, mjd)
        year=2019/                          or, compacted (nightlake.ingest.compact):
          2019_A0a.parquet                  a year's rows in parts, each from its first
          2019_B1e.parquet                  target to the next part's; ``.cut`` here
                                            while a rewrite moves rows between them
      detrends/type=flat/…parquet           the DetReg mirror (``nightlake sync``)
      serve.toml                            optional, the user's: ``nightlake serve``'s
                                            thresholds and limits (nightlake.web.settings)

Partition values are VARCHAR in every view: ``night`` is a date-like label, not a number.
This is the core every layer builds on, so it knows nothing of DuckDB connections: the
views, the macros and the read-only connection are the query layer's
(:class:`nightlake.Lake`, in :mod:`nightlake.query.lake`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nightlake.errors import LakeError, LockTimeout
from nightlake.files import atomic_replace, commit_temp, lock_wait, temp_beside
from nightlake.sql import sql_glob, sql_string

if TYPE_CHECKING:
    import pyarrow as pa

LAKE_ENV = "NIGHTLAKE_LAKE"
DEFAULT_LAKE = "lake"
LOCK_NAME = ".nightlake.lock"
MANIFEST = "nightlake.json"
METADATA_KEY = b"nightlake"
IMAGES = "images"
DETRENDS = "detrends"
PARTITION_TYPES = {"target": "VARCHAR", "night": "VARCHAR", "detector": "VARCHAR"}
#: the key of a compacted year's directory: ``images/year=Y/`` (parts), or format 3's
#: ``images/target=T/year=Y/`` (nightlake.ingest.compact)
YEAR = "year"
#: in a year's directory while a rewrite moves rows between its parts (and after one cut
#: short): the view then reads each part's rows below the next part's first only
CUT_MARKER = ".cut"
#: a partition's rows are sorted by these (a part's by target and night first)
PARTITION_SORT = ("detector", "visit", "mjd")


def resolve_lake_path(path: str | os.PathLike[str] | None) -> Path:
    """``--lake`` if given, else ``$NIGHTLAKE_LAKE``, else ``./lake``."""
    if path is None or str(path) == "":
        path = os.environ.get(LAKE_ENV) or DEFAULT_LAKE
    return Path(path)


class LakeDirectory:
    """A lake directory: its paths, manifest, partition files and writer lock.

    What writes the lake (convert, compact, sync) needs only this; queries take its subclass
    :class:`nightlake.Lake`, which adds the DuckDB connection.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = resolve_lake_path(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    # -- layout ---------------------------------------------------------------------------
    @property
    def images_dir(self) -> Path:
        return self.path / IMAGES

    @property
    def detrends_dir(self) -> Path:
        return self.path / DETRENDS

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def read_manifest(self) -> dict[str, Any]:
        """Lake-wide settings (``partition_by``, …); empty for a new lake."""
        import json

        try:
            return json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise LakeError(
                f"{self.manifest_path}: not valid JSON ({exc}); delete it and convert with --force"
            ) from None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Replace the manifest (the caller holds the lock). Each write counts one more
        ``generation``: a writer that changes which files the ``images`` view names (a
        compaction, a part cut) writes it, and a cached connection
        (:meth:`nightlake.query.lake.Lake.cursor`) sees the change and rebuilds its views."""
        import json

        manifest = {**manifest, "generation": self.read_manifest().get("generation", 0) + 1}
        atomic_write_bytes(self.manifest_path, json.dumps(manifest, indent=2).encode() + b"\n")

    def image_files(self) -> list[Path]:
        """Every partition file of ``images``, sorted by path."""
        found = []
        # os.walk: pathlib's rglob costs several times more, and every connection lists
        for root, _, names in os.walk(self.images_dir, followlinks=True):
            found.extend(Path(root, name) for name in names if name.endswith(".parquet"))
        return sorted(found)

    # -- locking --------------------------------------------------------------------------
    @contextmanager
    def locked(self, timeout: float = 30.0) -> Iterator[None]:
        """Hold the lake's writer lock; raise :class:`LockTimeout` after ``timeout`` seconds."""
        from filelock import FileLock, Timeout

        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LakeError(
                f"{self.path}: cannot create the lake directory: {exc.strerror}"
            ) from exc
        lock_path = self.path / LOCK_NAME
        lock = FileLock(str(lock_path))
        try:
            lock.acquire(timeout=lock_wait(timeout))
        except Timeout:
            raise LockTimeout(
                f"lake locked by another process: {lock_path} (waited {timeout:g} s; "
                "raise --lock-timeout or wait for the other convert to finish)"
            ) from None
        try:
            yield
        finally:
            lock.release()

    def images_select_sql(
        self, subset: list[Path] | None = None, *, files: list[Path] | None = None
    ) -> str:
        """The SELECT behind ``images``; over ``subset`` (some partition files), exactly the
        rows and columns the view takes from those files (a chunk of a resolve task).
        ``files``: :meth:`image_files`, when the caller has listed them already."""
        every = ImageFiles.of(self.image_files() if files is None else files, self.images_dir)
        chosen = every if subset is None else ImageFiles.of(subset, self.images_dir)
        manifest = self.read_manifest()
        levels = manifest.get("partition_by") or [
            part.split("=", 1)[0]
            for part in every.per_night[0].relative_to(self.images_dir).parts[:-1]
        ]
        # union_by_name costs a schema read per file; only needed when partitions differ
        union = "" if manifest.get("uniform_schema") else "union_by_name = true, "

        parts = _compacted_selects(self, every, chosen, subset is not None, levels, union)
        if chosen.per_night:
            types = ", ".join(
                f"'{k}': {PARTITION_TYPES[k]}" for k in levels if k in PARTITION_TYPES
            )
            # the glob would take the compacted files too
            if chosen.parts or chosen.target_years or subset is not None:
                source = _listed(chosen.per_night)
            else:
                source = sql_glob(self.images_dir.resolve(), "**/*.parquet")
            parts.append(
                f"SELECT * FROM read_parquet({source}, hive_partitioning = true, {union}"
                f"hive_types = {{{types}}})"
            )
        return "\nUNION ALL BY NAME\n".join(parts)


def _listed(paths: list[Path]) -> str:
    return "[" + ", ".join(sql_glob(f.resolve()) for f in paths) + "]"


def _compacted_selects(
    lake: LakeDirectory,
    every: ImageFiles,
    chosen: ImageFiles,
    listed: bool,
    levels: list[str],
    union: str,
) -> list[str]:
    """The SELECTs of ``images`` over the compacted files of ``chosen`` (some or all of the
    lake's files, ``every``): year parts, then target-year files; globbed, or ``listed``."""
    if not (chosen.parts or chosen.target_years):
        return []
    cast = {"detector": "CAST(detector AS VARCHAR) AS detector"}
    # the columns stay where the per-night view has them (night, detector and a year file's
    # target are the file's own columns, a target-year file's target the path's), so every
    # form reads alike even by position (EXCEPT ALL, UNION ALL)
    replace = ", ".join(cast[k] for k in levels if k in cast)
    select = "SELECT * EXCLUDE (year)" + (f" REPLACE ({replace})" if replace else "")
    key = " || chr(31) || ".join("CAST(detector AS VARCHAR)" if k in cast else k for k in levels)
    pending = pending_keys(every, lake.images_dir)  # over the whole lake, whatever the subset
    unpacked = [f"{key} NOT IN ({', '.join(sql_string(chr(31).join(k)) for k in pending)})"]
    where = unpacked if pending else []
    years = {f.parent.name for f in every.parts}
    cutting = cut_years(every.parts, lake.images_dir)
    # a target-year file supersedes its target's rows in its year's file
    split = sorted(
        f"{f.parent.parent.name.split('=', 1)[1]}\x1f{f.parent.name.split('=', 1)[1]}"
        for f in every.target_years
        if f.parent.name in years
    )
    images = lake.images_dir.resolve()
    selects = []
    for glob, hive, these, only_year in (
        ("year=*", "'year': VARCHAR", chosen.parts, True),
        ("target=*/year=*", "'target': VARCHAR, 'year': VARCHAR", chosen.target_years, False),
    ):
        if not these:
            continue
        conditions, extra = list(where), ""
        if only_year and split:
            keys = ", ".join(sql_string(k) for k in split)
            conditions.append(f"target || chr(31) || year NOT IN ({keys})")
        if only_year and (ranges := part_bounds(every.parts, within=cutting)):
            # a part's rows from the next part's first on are that part's (a rewrite in
            # progress, or cut short): each target is read from one file at every moment
            cases = " ".join(
                f"WHEN {sql_string(str(images / f.parent.name / f.name))} "
                f"THEN target < {sql_string(last)}"
                for f, last in ranges
            )
            conditions.append(f"CASE filename {cases} ELSE true END")
            extra, select = (
                "filename = true, ",
                select.replace("EXCLUDE (year)", "EXCLUDE (year, filename)"),
            )
        # while rows move between a year's parts the view names them: a glob would take a
        # part that lands after the view was built, beside an old one it does not bound
        named = listed or (only_year and bool(cutting))
        source = _listed(these) if named else sql_glob(images, f"{glob}/*.parquet")
        selects.append(
            f"{select} FROM read_parquet({source}, hive_partitioning = true, {union}{extra}"
            f"hive_types = {{{hive}}})"
            + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
        )
    return selects


class ImageFiles:
    """The files of ``images`` by kind, each path classified once (by its names)."""

    def __init__(self, parts: list[Path], target_years: list[Path], per_night: list[Path]):
        self.parts = parts  #: ``year=Y/Y_<first target>.parquet``: a compacted year's parts
        self.target_years = target_years  #: ``target=T/year=Y/…``: format 3's compacted files
        self.per_night = per_night  #: ``target=T/night=N[/detector=D]/…``: one partition each

    @classmethod
    def of(cls, files: Iterable[Path], images_dir: Path) -> ImageFiles:
        found: dict[str, list[Path]] = {"part": [], "target-year": [], "per-night": []}
        for f in files:
            found[file_kind(f, images_dir)].append(f)
        return cls(found["part"], found["target-year"], found["per-night"])


def part_first(path: Path) -> str:
    """The first target of a year part, from its name ``Y_<target>.parquet``."""
    return path.name[len(path.parent.name) - len(YEAR) : -len(".parquet")]


def part_ranges(firsts: Iterable[str]) -> list[tuple[str, str | None]]:
    """Each part's range of targets, ``[first, next part's first)``, in order."""
    firsts = sorted(firsts)
    return list(zip(firsts, [*firsts[1:], None]))


def cut_years(parts: list[Path], images_dir: Path) -> set[str]:
    """The year directories (``year=Y``) of ``parts`` where a rewrite moves rows between
    parts, or was cut short: their ``.cut`` marker (nightlake.ingest.compact)."""
    return {
        year for year in {f.parent.name for f in parts} if (images_dir / year / CUT_MARKER).exists()
    }


def part_bounds(parts: list[Path], within: set[str] | None = None) -> list[tuple[Path, str]]:
    """Each year part followed by another part of its year, with that part's first target;
    ``within``: only in those year directories (:func:`cut_years`)."""
    by_year: dict[str, dict[str, Path]] = {}
    for f in parts:
        by_year.setdefault(f.parent.name, {})[part_first(f)] = f
    bounds = []
    for year, found in by_year.items():
        if within is not None and year not in within:
            continue
        bounds += [(found[first], last) for first, last in part_ranges(found) if last]
    return bounds


def file_kind(path: Path, images_dir: Path) -> str:
    """What a file of ``images`` is, by its names: ``part`` (``year=Y/…``), ``target-year``
    (format 3's ``target=T/year=Y/…``) or ``per-night``."""
    year = path.parent
    if year.name.startswith(f"{YEAR}="):
        if year.parent == images_dir:
            return "part"
        if year.parent.parent == images_dir:
            return "target-year"
    return "per-night"


def is_compacted(path: Path, images_dir: Path) -> bool:
    """Is this file of ``images`` compacted: a year part or a target-year?"""
    return file_kind(path, images_dir) != "per-night"


def is_year_file(path: Path, images_dir: Path) -> bool:
    """Is this file of ``images`` a part of a compacted year (``year=Y/Y_<first>.parquet``)?"""
    return file_kind(path, images_dir) == "part"


def year_of(night: str) -> str:
    return night[:4]


def pending_keys(files: ImageFiles, images_dir: Path) -> list[tuple[str, ...]]:
    """Partition keys of per-night files whose year also has a compacted file: their rows
    supersede that partition's rows in it (a convert or compaction in progress, or cut short)."""
    years = {f.parent.name for f in files.parts + files.target_years}
    keys = []
    for f in files.per_night:
        values = [p.split("=", 1)[1] for p in f.relative_to(images_dir).parts[:-1]]
        if len(values) >= 2 and f"{YEAR}={year_of(values[1])}" in years:
            keys.append(tuple(values))
    return keys


def partition_metadata(schema: pa.Schema) -> dict[str, Any]:
    """The ``nightlake`` key-value metadata of a partition or compacted file (empty if absent)."""
    import json

    raw = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def read_partition_metadata(path: Path) -> dict[str, Any]:
    """:func:`partition_metadata` of the file at ``path`` (its footer only)."""
    import pyarrow.parquet as pq

    return partition_metadata(pq.read_schema(path))


def sorted_by(table: pa.Table, columns: Iterable[str]) -> pa.Table:
    """``table`` sorted by those of ``columns`` it has (a stable sort; no copy when it is in
    order already). A table of many chunks is combined first: a take across hundreds of
    chunks costs more than the copy."""
    import numpy as np
    import pyarrow.compute as pc

    keys = [(c, "ascending") for c in columns if c in table.column_names]
    if not keys or not table.num_rows:
        return table
    order = pc.sort_indices(table.select([c for c, _ in keys]), sort_keys=keys)
    if np.array_equal(order.to_numpy(), np.arange(len(order))):
        return table
    if table.column(0).num_chunks > 1:
        table = table.combine_chunks()
    return table.take(order)


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically and durably (see :mod:`nightlake.files`)."""
    with atomic_replace(target) as tmp:
        tmp.write_bytes(data)


#: strings longer than this on average get no min/max statistics
LONG_STRING_BYTES = 64


def _is_text(field: pa.Field) -> bool:
    import pyarrow as pa

    kind = field.type
    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    )


def _long_string(field: pa.Field, column: pa.ChunkedArray) -> bool:
    return _is_text(field) and column.nbytes > LONG_STRING_BYTES * max(1, len(column))


def dictionary_columns(table: pa.Table) -> list[str]:
    """The columns written with dictionary pages: strings (and bytes), but not long ones
    (``wcs``), in every Parquet file nightlake writes.

    DuckDB reads a dictionary-encoded string column as its distinct values plus an index, so
    grouping or filtering on ``night``, ``band`` or ``filter`` costs far less than over
    plain pages (docs/design.md, "Files"). A short column whose values do not repeat (a
    detrend ``filename``) costs the writer a dictionary it gives up on past 1 MiB; a long one
    (a JSON document) is left plain, as are numbers.
    """
    return [
        field.name
        for field, column in zip(table.schema, table.columns)
        if _is_text(field) and not _long_string(field, column)
    ]


def statistics_columns(table: pa.Table) -> list[str]:
    """Columns whose min/max statistics are safe and worth writing.

    Parquet leaves NaN out of float min/max, and DuckDB then folds ``isnan(x)`` to false for
    the whole row group: a float column holding NaN is written without statistics. Nested
    columns get none, nor do long strings (``wcs``, ``config``: nobody filters on a range of
    JSON documents, and their min/max would be stored whole, twice per column chunk).
    """
    import pyarrow as pa

    keep, floats = [], []
    for i, (field, column) in enumerate(zip(table.schema, table.columns)):
        if pa.types.is_nested(field.type):
            continue
        if pa.types.is_floating(field.type):
            floats.append(i)
        elif _long_string(field, column):
            continue
        keep.append(i)
    with_nan = _columns_with_nan(table, floats)
    return [table.schema.field(i).name for i in keep if i not in with_nan]


def _columns_with_nan(table: pa.Table, indices: list[int]) -> set[int]:
    """Which of these float columns hold NaN (a null is not NaN). The columns without nulls
    are tested in one numpy pass (a call per column cost more than the test)."""
    import numpy as np
    import pyarrow.compute as pc

    found, arrays, owners = set(), [], []
    for i in indices:
        column = table.column(i)
        if column.null_count:
            if pc.any(pc.is_nan(column)).as_py():
                found.add(i)
            continue
        for chunk in column.chunks:
            if len(chunk):
                arrays.append(chunk.to_numpy())
                owners.append(i)
    if arrays:
        starts = np.cumsum([0] + [len(a) for a in arrays[:-1]])
        hits = np.logical_or.reduceat(np.isnan(np.concatenate(arrays)), starts)
        found.update(owner for owner, hit in zip(owners, hits) if hit)
    return found


def write_parquet_atomic(table: pa.Table, target: Path) -> None:
    """Write one partition file (zstd) atomically: readers see the old file or the new one."""
    commit_temp(write_parquet_temp(table, target), target)


def write_parquet_temp(table: pa.Table, target: Path, row_group_size: int | None = None) -> Path:
    """Write ``table`` as zstd Parquet to a temp file beside ``target`` and return it;
    :func:`nightlake.files.commit_temp` makes it durable and moves it into place.

    Dictionary pages for the short strings only (:func:`dictionary_columns`).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    with temp_beside(target) as tmp:
        # Buffered: the Parquet writer otherwise makes ~200 small write()s and ~100 lseek()s
        # per file, and system calls are dear on a VM.
        with pa.output_stream(tmp, buffer_size=1 << 20) as sink:
            pq.write_table(
                table,
                sink,
                compression="zstd",
                use_dictionary=dictionary_columns(table),
                write_statistics=statistics_columns(table),
                row_group_size=row_group_size,
            )
    return tmp
