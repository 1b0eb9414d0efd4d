"""Where a resolution came from, and whether it still follows from there.

A result of ``nightlake resolve`` carries, in its Parquet key-value metadata under
``nightlake.resolve``, everything needed to derive it again: the database (path, SHA-256 of the
state used, journal position: entries applied and the hash of the last entry's line), the type,
the mode, ``--as-of`` when given, the lake's state (a fingerprint of the image partitions read:
SHA-256 over their relative path, size and mtime) and the nightlake version.

:func:`verify` replays the journal to the recorded position, resolves the lake again and compares
row by row. The journal position, not the time, is what pins the records: later registrations
append entries after it and do not change what the replay up to it gives.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nightlake.errors import InputError, NightlakeError
from nightlake.sql import sql_identifier

if TYPE_CHECKING:
    import pyarrow as pa

    from nightlake.query.lake import Lake

#: the Parquet key-value metadata key of a resolution's provenance
KEY = b"nightlake.resolve"
#: version of the provenance record; 1 (no ``provenance_version``) held only the mirror's
#: fingerprint and cannot be verified
PROVENANCE_VERSION = 2


class InputsGone(NightlakeError):
    """What a result was derived from is no longer there (or no longer the same)."""

    exit_code = 2


def lake_state(lake: Lake) -> dict[str, Any]:
    """A fingerprint of the image partitions a resolution reads: SHA-256 over the sorted
    (relative path, size, mtime_ns) of every partition file, and their count."""
    digest = hashlib.sha256()
    files = sorted(lake.image_files())
    for f in files:
        st = f.stat()
        rel = f.relative_to(lake.images_dir).as_posix()
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return {"path": str(lake.path.resolve()), "files": len(files), "sha256": digest.hexdigest()}


def position_of(db_path: str | os.PathLike, sha256: str | None) -> dict | None:
    """The journal position of the last entry that produced the file ``sha256`` (None when the
    database keeps no journal or no entry produced it)."""
    from nightlake.detrends.detreg.journal import load_journal

    try:
        journal = load_journal(db_path)
    except (NightlakeError, OSError):
        return None
    for n in range(len(journal.entries) - 1, -1, -1):
        if sha256 and journal.entries[n].get("sha256") == sha256:
            return {
                "entries": n + 1,
                "last_entry_sha256": journal.hashes[n],
                "time": journal.entries[n].get("time"),
            }
    return None


def database_state(
    db_path: str | os.PathLike | None, sha256: str | None, journal: dict | None
) -> dict[str, Any]:
    """Which state of a database an answer came from, the one shape every provenance uses:
    its path (resolved), the SHA-256 of that state and its journal position (None when
    unknown: no journal, or a state previewed in memory)."""
    path = str(Path(db_path).resolve()) if db_path is not None else None
    return {"path": path, "sha256": sha256, "journal": journal}


def database_record(db) -> dict[str, Any]:
    """:func:`database_state` of a :class:`DetRegDB` as read (or replayed)."""
    fp = db.fingerprint
    position = fp.get("journal") or position_of(fp["path"], fp["sha256"])
    return database_state(fp["path"], fp["sha256"], position)


def metadata(key: bytes | str, info: dict[str, Any]) -> dict[bytes, bytes]:
    """A provenance as Parquet key-value metadata under ``key``."""
    return {key.encode() if isinstance(key, str) else key: json.dumps(info).encode()}


def attach(table: pa.Table, key: bytes | str, info: dict[str, Any]) -> pa.Table:
    """``table`` with the provenance ``info`` in its schema metadata under ``key``."""
    return table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata(key, info)})


def search_record(db, detrend_type: str, mode: str) -> dict[str, Any]:
    """The provenance of a ``detsearch`` answer: the database (:func:`database_record`), type,
    mode, ``--as-of`` (when the database was replayed) and the nightlake version."""
    return {
        **_answer_of(detrend_type, mode, db.fingerprint.get("as_of")),
        "db": database_record(db),
    }


def _answer_of(detrend_type: str | None, mode: str | None, as_of: datetime | None) -> dict:
    """What every provenance record starts with: the question asked and who answered it."""
    from nightlake import __version__

    return {
        "provenance_version": PROVENANCE_VERSION,
        "type": detrend_type,
        "mode": mode,
        "as_of": as_of.isoformat() if as_of is not None else None,
        "nightlake_version": __version__,
    }


def record(
    lake: Lake,
    detrend_type: str | None,
    mode: str | None,
    *,
    db_path: str | os.PathLike | None,
    sha256: str | None,
    position: dict | None,
    as_of: datetime | None,
) -> dict[str, Any]:
    """The provenance of one resolution (what ``nightlake.resolve`` holds)."""
    return {
        **_answer_of(detrend_type, mode, as_of),
        "db": database_state(db_path, sha256, position),
        "lake": lake_state(lake),
    }


def changes_record(lake: Lake, change: str, before: dict, after: dict) -> dict[str, Any]:
    """The provenance of a list of changed images: the change in words and both states
    (each a :func:`database_state` with its ``label``), the lake's state."""
    return {
        **_answer_of(None, None, None),
        "change": change,
        "before": before,
        "after": after,
        "lake": lake_state(lake),
    }


def resolve_table(
    lake: Lake,
    detrend_type: str,
    mode: str,
    *,
    as_of: datetime | None = None,
    db: str | os.PathLike | None = None,
    upto: int | None = None,
) -> tuple[pa.Table, dict[str, Any]]:
    """``resolve_detrends(type, mode)`` over the lake, with its provenance in the schema's
    metadata: from the mirror, or from the database replayed as of ``as_of`` (or up to journal
    entry ``upto``). The one function behind every resolution written to a file."""
    import duckdb

    from nightlake.errors import QueryError, one_line
    from nightlake.sql import fetch_arrow

    con = lake.connect()
    try:
        source, db_path, sha256, position = "detrends", None, None, None
        if as_of is not None or upto is not None:
            from nightlake.detrends.history import AS_OF_TABLE, lake_db, register_as_of

            db_path = lake_db(lake, db)
            state = register_as_of(con, db_path, as_of, upto=upto)
            source, sha256 = AS_OF_TABLE, state.sha256
            position = state.position.as_dict()
        else:
            db_path, sha256 = _mirror_db(lake)
        table = fetch_arrow(
            con.sql(
                "SELECT * FROM resolve_detrends($t, mode := $m, detrend_source := $s)",
                params={"t": detrend_type, "m": mode, "s": source},
            )
        )
    except duckdb.Error as exc:
        raise QueryError(one_line(exc)) from exc
    finally:
        con.close()
    if source == "detrends":
        info = mirror_record(lake, detrend_type, mode)
    else:
        info = record(
            lake, detrend_type, mode, db_path=db_path, sha256=sha256, position=position, as_of=as_of
        )
    return attach(table, KEY, info), info


def mirror_record(lake: Lake, detrend_type: str | None, mode: str | None) -> dict[str, Any]:
    """The provenance of an answer from the lake's mirror (also what the Dask path records)."""
    db_path, sha256 = _mirror_db(lake)
    position = position_of(db_path, sha256) if db_path else None
    return record(
        lake, detrend_type, mode, db_path=db_path, sha256=sha256, position=position, as_of=None
    )


def _mirror_db(lake: Lake) -> tuple[str | None, str | None]:
    from nightlake.detrends.mirror import manifest

    try:
        info = manifest(lake) or {}
    except NightlakeError:
        info = {}
    return info.get("db_path"), info.get("sha256")


# --------------------------------------------------------------------------------------------
# export

#: the Parquet key-value metadata key of an export that read the detrend mirror
EXPORT_KEY = "nightlake.export"
_MIRROR_VIEWS = ("detrends", "detrend_filters")


def reads_mirror(lake: Lake, query: str, params: dict | None = None) -> bool:
    """Whether ``query`` reads the lake's detrend mirror, as DuckDB's binder says: on a
    throwaway connection the mirror's views are pointed at tables that no longer exist, so
    binding the query fails exactly when it reads them (also through a macro such as
    ``resolve_detrends`` or ``detrend_for``)."""
    import duckdb

    from nightlake.query.stream import open_connection

    con = open_connection(lake)
    try:
        for view in _MIRROR_VIEWS:
            probe = f"_nl_probe_{view}"
            try:
                con.execute(f"CREATE TEMP TABLE {probe} AS SELECT * FROM {view} LIMIT 0")
            except duckdb.Error:
                return False  # no mirror in this lake
            con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {probe}")
            con.execute(f"DROP TABLE {probe}")
        try:
            con.execute("EXPLAIN " + query, params or None)
        except duckdb.Error as exc:
            return "_nl_probe_" in str(exc)
        return False
    finally:
        con.close()


def export_record(lake: Lake, query: str) -> dict[str, Any]:
    """The provenance of an export that read the mirror: the database as synced (path,
    SHA-256, journal position), the lake's state, the nightlake version and the query."""
    return dict(mirror_record(lake, None, None), query=query)


# --------------------------------------------------------------------------------------------
# verify


@dataclass(frozen=True)
class Difference:
    """One image whose recorded answer differs from the one derived again."""

    image: dict
    recorded: dict | None
    derived: dict | None


def result_files(path: str | os.PathLike) -> list[Path]:
    """The Parquet files of a result: the file itself, or the parts of a directory written by
    ``nightlake resolve --executor dask`` (part-NNNNN.parquet)."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    parts = sorted(path.glob("part-*.parquet"))
    if not parts:
        raise InputError(path, "a directory without part-NNNNN.parquet files")
    return parts


def read_provenance(path: str | os.PathLike) -> dict:
    """The provenance a result records (every part of a directory must record the same)."""
    import pyarrow.parquet as pq

    try:
        metas = [pq.read_schema(f).metadata or {} for f in result_files(path)]
        meta = metas[0]
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a Parquet file ({exc})") from None
    if KEY not in meta:
        raise InputError(path, "not a resolution written by nightlake resolve (no provenance)")
    if any(m.get(KEY) != meta[KEY] for m in metas):
        raise InputError(path, "its parts record different provenances")
    info = json.loads(meta[KEY])
    if info.get("provenance_version") != PROVENANCE_VERSION:
        raise InputError(
            path,
            "written by an older nightlake, whose provenance cannot be verified: "
            "run nightlake resolve again",
        )
    return info


def verify(path: str | os.PathLike) -> list[Difference]:
    """Derive the resolution in ``path`` again from its recorded inputs; the rows that differ.

    InputsGone (exit 2) when the lake or the database is gone, the lake's partitions changed,
    or the journal no longer holds the recorded position.
    """
    import pyarrow.parquet as pq

    from nightlake.detrends.detreg.journal import load_journal
    from nightlake.query.lake import Lake

    info = read_provenance(path)
    lake_info, db_info = info["lake"], info["db"]
    lake = Lake(lake_info["path"])
    if not lake.path.is_dir():
        raise InputsGone(f"{path}: the lake it was resolved from is gone: {lake.path}")
    if lake_state(lake) != lake_info:
        raise InputsGone(
            f"{path}: the lake's image partitions changed since it was resolved "
            f"({lake.path}: fingerprint {lake_info['sha256'][:12]}… of {lake_info['files']} files)"
        )
    db_path, pos = db_info.get("path"), db_info.get("journal")
    if not db_path or not Path(db_path).exists():
        raise InputsGone(f"{path}: the detrend database it was resolved from is gone: {db_path}")
    if not pos:
        raise InputsGone(f"{path}: {db_path}: no journal position recorded (no journal)")
    journal = load_journal(db_path)
    n = pos["entries"]
    if len(journal.entries) < n or journal.hashes[n - 1] != pos["last_entry_sha256"]:
        raise InputsGone(
            f"{path}: {db_path}: the journal no longer holds the recorded position "
            f"(entry {n}, {pos['last_entry_sha256'][:12]}…)"
        )
    derived, _ = resolve_table(lake, info["type"], info["mode"], db=db_path, upto=n)
    import pyarrow as pa

    recorded = pa.concat_tables([pq.read_table(f) for f in result_files(path)])
    return differences(recorded, derived)


def differences(recorded: pa.Table, derived: pa.Table) -> list[Difference]:
    """Rows matched on their image columns (those not starting ``detrend_``); an image on one
    side only, or with other detrend columns, is a difference."""
    answer = [n for n in derived.column_names if n.startswith("detrend_")]
    key = [n for n in derived.column_names if not n.startswith("detrend_")]
    missing = [n for n in key + answer if n not in recorded.column_names]
    if missing:
        return [Difference({"columns missing": missing}, None, None)]

    # an image is named in reports by these columns when the lake has them
    named = [k for k in ("visit", "detector", "night", "target") if k in key] or key[:3]

    def by_image(table: pa.Table) -> dict:
        out: dict = {}
        for row in table.select(key + answer).to_pylist():
            # JSON text as the key: NaN equals NaN there, and nested values are hashable
            image = json.dumps([row[k] for k in key], default=str)
            out.setdefault(image, ({k: row[k] for k in named}, []))[1].append(
                {a: row[a] for a in answer}
            )
        return out

    # Only the rows that differ reach Python: DuckDB's EXCEPT ALL (a multiset difference in
    # which NaN equals NaN) finds them, so a clean 1M-row result costs no Python per row.
    import duckdb

    columns = ", ".join(map(sql_identifier, key + answer))
    con = duckdb.connect()
    try:
        con.register("recorded_rows", recorded.select(key + answer))
        con.register("derived_rows", derived.select(key + answer))
        only = {}
        for a, b in (("recorded_rows", "derived_rows"), ("derived_rows", "recorded_rows")):
            query = f"SELECT {columns} FROM {a} EXCEPT ALL SELECT {columns} FROM {b}"
            only[a] = con.sql(query).to_arrow_table()
    finally:
        con.close()
    old, new = by_image(only["recorded_rows"]), by_image(only["derived_rows"])
    diffs = []
    for image in sorted(set(old) | set(new)):
        name = (old.get(image) or new.get(image))[0]
        a, b = old.get(image, (None, []))[1], new.get(image, (None, []))[1]
        if a != b:
            diffs.append(Difference(name, a[0] if a else None, b[0] if b else None))
    return diffs


__all__ = [
    "EXPORT_KEY",
    "KEY",
    "Difference",
    "InputsGone",
    "attach",
    "changes_record",
    "lake_state",
    "database_record",
    "database_state",
    "metadata",
    "export_record",
    "read_provenance",
    "reads_mirror",
    "record",
    "result_files",
    "search_record",
    "resolve_table",
    "verify",
]
