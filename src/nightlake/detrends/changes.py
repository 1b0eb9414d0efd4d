"""Which lake images change detrend between two states of the DetReg database.

One function, :func:`diff_states`, serves the preview of a change (``detregister add/delete
--preview``: the database now against the same records with the change applied in memory) and
the reprocessing list after changes (``nightlake resolve --changed-since T`` / ``--diff T1 T2``:
two states replayed from the journal, :mod:`nightlake.detrends.history`). Nothing is written:
the two states are Arrow tables with the mirror's columns (:func:`sync.records_table`)
registered on a connection to the lake.

Per type and mode, the table macro ``changed_detrends`` (``sql/47_changes.sql``) merges the
timelines of both states on the detrend side and gives each image both answers with one ASOF
join, as ``resolve_detrends`` gives one; only the rows whose detrend differs leave DuckDB.
Images are only read for the CCDs whose records of that type differ between the states: an
image's detrend depends on the records of its own CCD alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nightlake.detrends.rules import DETREND_TYPES, MODES
from nightlake.errors import QueryError, UsageError, one_line
from nightlake.sql import sql_identifier

if TYPE_CHECKING:
    from datetime import datetime

    import duckdb
    import pyarrow as pa

    from nightlake.detrends.detreg import DetRegDB, DetRegEntry, Selection
    from nightlake.query.lake import Lake

#: the Parquet key-value metadata key of a list of changed images
KEY = b"nightlake.changes"
#: image columns that name an image in the list, when the lake has them
NAMING_COLUMNS = ("night", "target", "visit", "detector", "obs_time")
#: image columns resolution reads
RESOLVE_COLUMNS = ("detector", "filter", "band", "exposureTime", "obs_time")
#: record columns that decide an answer (not the index: a delete shifts it, and adds and
#: deletes keep the records' relative order, which is all the rules read of it)
DECIDING = (
    "type",
    "ccd",
    "filter",
    "dark_exptime",
    "tstart_s",
    "tstop_s",
    "treg_s",
    "filename_bytes",
)


def changed_classes(con: duckdb.DuckDBPyConnection) -> dict[str, list[int]]:
    """Per type, the CCDs whose records differ between ``_nl_before`` and ``_nl_after``."""
    cols = ", ".join(DECIDING)
    rows = con.sql(
        f"""SELECT type, list(DISTINCT ccd ORDER BY ccd) FROM (
              (SELECT {cols} FROM _nl_before EXCEPT ALL SELECT {cols} FROM _nl_after)
              UNION ALL
              (SELECT {cols} FROM _nl_after EXCEPT ALL SELECT {cols} FROM _nl_before))
            WHERE type IS NOT NULL GROUP BY type"""
    ).fetchall()
    return {kind: [int(c) for c in ccds] for kind, ccds in rows}


def _diff_query(naming: list[str]) -> str:
    """The query of one (type, mode): ``changed_detrends`` over ``_nl_slim`` between
    ``_nl_before`` and ``_nl_after``; ``$t``/``$m`` bind the type and mode."""
    named = ", ".join(sql_identifier(c) for c in naming)
    return f"""
SELECT $t AS type, $m AS mode, {named}, old_filename, new_filename, old_rule, new_rule,
       old_scale, new_scale, old_index, new_index
FROM changed_detrends($t, mode := $m, source := '_nl_slim', before_source := '_nl_before',
                      after_source := '_nl_after')
ORDER BY {named}"""


def _slim_view(con: duckdb.DuckDBPyConnection, ccds: list[int]) -> list[str]:
    """``_nl_slim``: the lake's images of ``ccds``, only the columns the diff reads; returns
    the naming columns the lake has."""
    have = {r[0] for r in con.execute("SELECT column_name FROM (DESCRIBE images)").fetchall()}
    missing = [c for c in RESOLVE_COLUMNS if c not in have]
    if missing:
        raise QueryError(f"the lake's images lack {', '.join(missing)}: cannot resolve detrends")
    naming = [c for c in NAMING_COLUMNS if c in have]
    cols = ", ".join(sql_identifier(c) for c in dict.fromkeys([*naming, *RESOLVE_COLUMNS]))
    con.execute("CREATE OR REPLACE TEMP TABLE _nl_ccds (ccd BIGINT)")
    con.execute("INSERT INTO _nl_ccds SELECT unnest($c::BIGINT[])", {"c": list(ccds)})
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW _nl_slim AS SELECT {cols} FROM images "
        "WHERE detector IN (SELECT ccd FROM _nl_ccds)"
    )
    return naming


def diff_states(
    lake: Lake,
    before: DetRegDB,
    after: DetRegDB,
    *,
    types: Sequence[str] | None = None,
    modes: Sequence[str] = MODES,
) -> pa.Table:
    """The lake's images whose detrend differs between the records of ``before`` and
    ``after``: one row per (type, mode, image), with the old and new filename, rule, dark
    scale and record index (NULL: no detrend). ``types`` default to those whose records
    differ; types whose records are the same have no rows."""
    import duckdb
    import pyarrow as pa

    from nightlake.detrends.sync import records_table
    from nightlake.sql import fetch_arrow

    for kind in types or ():
        if kind not in DETREND_TYPES:
            raise UsageError(f"--type {kind!r}: expected one of {', '.join(DETREND_TYPES)}")
    for mode in modes:
        if mode not in MODES:
            raise UsageError(f"--mode {mode!r}: expected exact or recent")
    con = lake.connect()
    try:
        con.register("_nl_before", records_table(before))
        con.register("_nl_after", records_table(after))
        classes = changed_classes(con)
        parts = []
        for kind in [k for k in DETREND_TYPES if k in classes and (not types or k in types)]:
            naming = _slim_view(con, classes[kind])
            query = _diff_query(naming)
            for mode in modes:
                parts.append(fetch_arrow(con.sql(query, params={"t": kind, "m": mode})))
        if not parts:  # nothing differs: the empty list, with its columns
            naming = _slim_view(con, [])
            parts.append(
                fetch_arrow(con.sql(_diff_query(naming), params={"t": "flat", "m": "exact"}))
            )
    except duckdb.Error as exc:
        raise QueryError(one_line(exc)) from exc
    finally:
        con.close()
    return pa.concat_tables(parts)


def summary(changes: pa.Table) -> pa.Table:
    """The changed images counted by night × CCD × type × mode × (old → new filename)."""
    import duckdb

    by = [c for c in ("night", "detector") if c in changes.column_names]
    keys = ", ".join([*by, "type", "mode", "old_filename", "new_filename"])
    con = duckdb.connect()
    try:
        con.register("_nl_changes", changes)
        return con.sql(
            f"SELECT {keys}, count(*) AS images FROM _nl_changes GROUP BY ALL ORDER BY ALL"
        ).to_arrow_table()
    finally:
        con.close()


def with_provenance(
    changes: pa.Table, lake: Lake, before: dict, after: dict, change: str
) -> pa.Table:
    """``changes`` with ``nightlake.changes`` in its schema metadata
    (:func:`nightlake.detrends.provenance.changes_record`): both states, each a
    :func:`~nightlake.detrends.provenance.database_state` with its ``label``."""
    from nightlake.detrends.provenance import attach, changes_record

    return attach(changes, KEY, changes_record(lake, change, before, after))


def _state(label: str, state: dict[str, Any]) -> dict[str, Any]:
    return {"label": label, **state}


# --------------------------------------------------------------------------------------------
# The two states: a change previewed, or two times of the journal


def _now(db_path: str | os.PathLike) -> tuple[DetRegDB, dict[str, Any]]:
    from nightlake.detrends.detreg import read_db
    from nightlake.detrends.provenance import database_record

    db = read_db(db_path)
    return db, _state("now", database_record(db))


def _previewed(label: str, now: dict[str, Any]) -> dict[str, Any]:
    """A state computed in memory: the database it starts from, no file, no journal yet."""
    from nightlake.detrends.provenance import database_state

    return _state(label, database_state(now["path"], None, None))


def preview_add(
    lake: Lake,
    db_path: str | os.PathLike,
    entries: Sequence[DetRegEntry],
    *,
    modes: Sequence[str] = MODES,
) -> pa.Table:
    """The images whose detrend ``detregister add`` of ``entries`` would change (nothing is
    written; an add the database would refuse raises the same error)."""
    from nightlake.detrends.detreg.db import check_add, with_entries

    db, now = _now(db_path)
    after, new = with_entries(db, entries)
    check_add(db, after.records, after.filters)
    label = f"with the add of {len(new)} record(s)"
    changes = diff_states(lake, db, after, modes=modes)
    return with_provenance(changes, lake, now, _previewed(label, now), label)


def preview_delete(
    lake: Lake,
    db_path: str | os.PathLike,
    selection: Selection,
    *,
    allow_all: bool = False,
    modes: Sequence[str] = MODES,
) -> pa.Table:
    """The images whose detrend ``detregister delete`` of ``selection`` would change (nothing
    is written; the selection is refused as the delete would refuse it)."""
    import numpy as np

    from nightlake.detrends.detreg import delete_records
    from nightlake.detrends.detreg.db import without

    _, now = _now(db_path)
    db, removed, indices = delete_records(db_path, selection, dry_run=True, allow_all=allow_all)
    mask = np.zeros(len(db), dtype=bool)
    mask[indices] = True
    label = f"with the delete of {len(removed)} record(s)"
    changes = diff_states(lake, db, without(db, mask), modes=modes)
    return with_provenance(changes, lake, now, _previewed(label, now), label)


def changes_between(
    lake: Lake,
    db_path: str | os.PathLike,
    since: datetime,
    until: datetime | None = None,
    *,
    types: Sequence[str] | None = None,
    modes: Sequence[str] = MODES,
) -> pa.Table:
    """The images whose detrend differs between the database as of ``since`` and as of
    ``until`` (None: as it is now), both replayed from its journal."""
    from nightlake.detrends.history import replay

    if until is not None and until < since:
        raise UsageError(
            f"--diff {since.isoformat()} {until.isoformat()}: the second time is before the first"
        )
    from nightlake.detrends.provenance import database_record

    old = replay(db_path, since)
    before = _state(f"as of {since.isoformat()}", database_record(old.db))
    if until is None:
        new_db, after = _now(db_path)
    else:
        new_db = replay(db_path, until).db
        after = _state(f"as of {until.isoformat()}", database_record(new_db))
    changes = diff_states(lake, old.db, new_db, types=types, modes=modes)
    change = f"{before['label']} → {after['label']}"
    return with_provenance(changes, lake, before, after, change)


__all__ = [
    "KEY",
    "changed_classes",
    "changes_between",
    "diff_states",
    "preview_add",
    "preview_delete",
    "summary",
    "with_provenance",
]
