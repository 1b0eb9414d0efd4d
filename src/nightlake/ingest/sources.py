"""Find image collections on disk and say which lake partition each row belongs to.

Inputs come in three shapes, in any mix (files, directories, globs)::

    20190402_A0a.collection                         one night/target
    joined.collection                               every night/target in one file
    A0a/20190402/20190402_A0a_5.collection          sharded: one file per detector

Target and night come from the ``fieldname`` and ``night`` columns; where a file lacks them,
from its name (``<night>_<target>[_<detector>].collection``); where neither says, from
``--target``/``--night``, else an error asks for them. A ``target`` column must hold the rows'
target (the lake shows the partition key under that name), and a ``year`` column is refused
(the key of compacted target-years).
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from nightlake.errors import InputError
from nightlake.ingest.ecsv import not_a_regular_file
from nightlake.lake import YEAR

SUFFIXES = (".collection", ".ecsv")
TARGET_COLUMN = "fieldname"
NIGHT_COLUMN = "night"
_NAME = re.compile(r"^(?P<night>\d{8})_(?P<target>[A-Za-z0-9]+)(?:_(?P<detector>\d+))?$")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class SourceFile:
    """One input file with what its name says (``None`` where it says nothing)."""

    path: Path
    night: str | None = None
    target: str | None = None
    detector: str | None = None

    @property
    def is_shard(self) -> bool:
        return self.detector is not None

    @property
    def group(self) -> str:
        """Files of one group are parts of one logical source (the shards of a target/night)."""
        if self.is_shard:
            return f"sharded:{self.path.parent}"
        return f"file:{self.path}"


def describe(path: Path) -> SourceFile:
    match = _NAME.match(path.name.rsplit(".", 1)[0])
    if not match:
        return SourceFile(path=path)
    return SourceFile(
        path=path, night=match["night"], target=match["target"], detector=match["detector"]
    )


def find_inputs(sources: list[str | os.PathLike[str]]) -> tuple[list[SourceFile], list[InputError]]:
    """Expand files, directories (recursively) and globs into input files, each once, sorted,
    going on past bad inputs: the files found, and an error for each source or file that
    cannot be one (missing, a symlink loop, a FIFO, a device, …)."""
    found: dict[Path, SourceFile] = {}
    errors: list[InputError] = []
    for source in sources:
        try:
            candidates = _expand(source)
        except InputError as exc:
            errors.append(exc)
            continue
        for candidate in candidates:
            problem = not_a_regular_file(candidate)
            if problem:
                errors.append(InputError(candidate, problem))
                continue
            found.setdefault(candidate.resolve(), describe(candidate.resolve()))
    return [found[p] for p in sorted(found)], errors


def _expand(source: str | os.PathLike[str]) -> list[Path]:
    """The paths one source names; anything but a directory counts, so that a FIFO or a
    broken link named ``*.collection`` is reported rather than passed over."""
    text = str(source)
    path = Path(text)
    if path.is_dir():
        candidates = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and not p.is_dir())
        if not candidates:
            raise InputError(path, f"directory holds no {' or '.join(SUFFIXES)} files")
        return candidates
    if path.exists() or path.is_symlink():
        return [path]
    if _GLOB_CHARS & set(text):
        candidates = sorted(
            Path(p) for p in glob.glob(text, recursive=True) if not Path(p).is_dir()
        )
        if not candidates:
            raise InputError(text, "glob matches no files")
        return candidates
    raise InputError(path, "no such file or directory")


def partition_keys(
    source: SourceFile, table: pa.Table, *, target: str | None = None, night: str | None = None
) -> tuple[pa.Array, pa.Array]:
    """Per-row (target, night) as string arrays: columns first, then file name, then options."""
    n = table.num_rows
    targets = _key_column(table, TARGET_COLUMN, source.target or target, n)
    nights = _key_column(table, NIGHT_COLUMN, source.night or night, n)
    missing = [
        (option, column)
        for option, column, arr in (
            ("target", TARGET_COLUMN, targets),
            ("night", NIGHT_COLUMN, nights),
        )
        if arr is None
    ]
    if missing:
        raise InputError(
            source.path,
            "cannot tell the {} of its rows: no {} column and the file "
            "name is not <night>_<target>.collection; pass {}".format(
                " and ".join(o for o, _ in missing),
                "/".join(repr(c) for _, c in missing),
                " ".join(f"--{o}" for o, _ in missing),
            ),
        )
    _check_key_named_columns(source, table, {"target": targets, "night": nights})
    return targets, nights


#: the column each partition key is read from, when a file has it
KEY_COLUMNS = {"target": TARGET_COLUMN, "night": NIGHT_COLUMN}


def _check_key_named_columns(
    source: SourceFile, table: pa.Table, keys: dict[str, pa.Array]
) -> None:
    """A column named like a partition key but not its source (``target``: the key comes
    from ``fieldname``) must hold each row's key: the lake shows the key under that name,
    so other values would be hidden. ``year`` is always refused: compaction makes it a key."""
    if YEAR in table.column_names:
        raise InputError(
            source.path,
            "the name of a compacted lake's partition key (images/target=T/year=Y/), "
            "which would hide the column; rename it in the file",
            column=YEAR,
        )
    for level, values in keys.items():
        if level == KEY_COLUMNS[level] or level not in table.column_names:
            continue
        try:
            column = table.column(level).cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            column = None
        if column is None or not pc.all(pc.equal(column, values).fill_null(False)).as_py():
            raise InputError(
                source.path,
                f"holds values other than the rows' partition {level} (from "
                f"'{KEY_COLUMNS[level]}', the file name or --{level}), which the lake shows "
                f"under this name; rename the column in the file",
                column=level,
            )


def _key_column(table: pa.Table, column: str, fallback: str | None, n: int) -> pa.Array | None:
    if column in table.column_names:
        values = table.column(column)
        if values.null_count == 0:
            return values.cast(pa.string()).combine_chunks()
        if fallback is not None:
            return pc.fill_null(values.cast(pa.string()), fallback).combine_chunks()
        return None
    if fallback is None:
        return None
    return pa.array([fallback] * n, pa.string())
