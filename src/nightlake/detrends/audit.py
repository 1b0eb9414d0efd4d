"""``nightlake audit``: what in the detrend database or its coverage of the lake needs a look.

Findings are rows (finding, type, ccd, record_index, other_index, night, filter_class, images,
detail). Which record wins is always asked of ``resolve_detrends``: shadowed records are found
by resolving the synthetic images of ``detrend_probes`` (one at every validity boundary, in
both modes), so the precedence rules are not written again here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from nightlake.detrends.rules import DETREND_TYPES, MODES
from nightlake.errors import UsageError
from nightlake.sql import fetch_arrow

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

FINDINGS = (
    "empty range",
    "open-ended",
    "duplicate filename",
    "identical record",
    "overlap",
    "shadowed",
    "missing file",
    "unreadable file",
    "gap",
    "recent fallback",
    "boundary crossing",
)

#: The columns of every finding row, in order.
COLUMNS = (
    "finding",
    "type",
    "ccd",
    "record_index",
    "other_index",
    "night",
    "filter_class",
    "images",
    "detail",
)

_SHADOWED = """
SELECT 'shadowed' AS finding, type, ccd, record_index, NULL::BIGINT AS other_index,
       NULL AS night, NULL AS filter_class, NULL::BIGINT AS images,
       'wins at no instant in either mode (a dead registration)' AS detail
FROM query_table($source)
WHERE type = $type AND tstop_s > tstart_s
  AND record_index NOT IN (SELECT detrend_index FROM _nl_winners WHERE detrend_index IS NOT NULL)
"""

_PROBE_WINNERS = """
CREATE OR REPLACE TEMP TABLE _nl_winners AS
SELECT 'exact' AS mode, detector, filter, exposureTime, obs_time, detrend_index
FROM resolve_detrends($type, mode := 'exact', source := '_nl_probes', detrend_source := $source)
UNION ALL
SELECT 'recent', detector, filter, exposureTime, obs_time, detrend_index
FROM resolve_detrends($type, mode := 'recent', source := '_nl_probes', detrend_source := $source)
"""

# Two records of one class (type, CCD, filter code or dark exposure time) whose ranges share an
# instant; the winners of the shared span are the exact winners at its boundary probes (the
# winner changes only at a boundary, and the span starts at one).
_OVERLAPS = """
WITH d AS (
    SELECT record_index, ccd, tstart, tstop, tstart_s, tstop_s,
           CASE WHEN $type IN ('flat', 'fringe') THEN coalesce(filter, '') END AS pf,
           CASE WHEN $type = 'dark' THEN dark_exptime::DOUBLE ELSE 0.0 END AS pe,
           CASE WHEN $type IN ('flat', 'fringe') THEN filter_code
                WHEN $type = 'dark' THEN dark_exptime END AS cls,
           CASE WHEN $type IN ('flat', 'fringe') THEN coalesce(filter, filter_code::VARCHAR)
                WHEN $type = 'dark' THEN dark_exptime::VARCHAR || ' s' ELSE 'any' END AS fclass
    FROM query_table($source)
    WHERE type = $type AND tstop_s > tstart_s
),
pairs AS (
    SELECT a.record_index AS ra, b.record_index AS rb, a.ccd, a.pf, a.pe, a.fclass,
           greatest(a.tstart, b.tstart) AS lo,
           least(coalesce(a.tstop, 'infinity'::TIMESTAMP),
                 coalesce(b.tstop, 'infinity'::TIMESTAMP)) AS hi
    FROM d AS a JOIN d AS b
      ON a.ccd = b.ccd AND a.cls IS NOT DISTINCT FROM b.cls AND a.record_index < b.record_index
     AND a.tstart_s < b.tstop_s AND b.tstart_s < a.tstop_s
),
won AS (
    SELECT p.ra, p.rb, w.detrend_index, min(w.obs_time) AS first
    FROM pairs AS p JOIN _nl_winners AS w
      ON w.mode = 'exact' AND w.detector = p.ccd AND w.filter IS NOT DISTINCT FROM p.pf
     AND w.exposureTime = p.pe AND w.obs_time >= p.lo AND w.obs_time < p.hi
    GROUP BY ALL
)
SELECT 'overlap' AS finding, $type AS type, p.ccd::INTEGER AS ccd, p.ra AS record_index,
       p.rb AS other_index, NULL::VARCHAR AS night, p.fclass AS filter_class,
       NULL::BIGINT AS images,
       'overlaps record ' || p.rb || ' from ' || strftime(p.lo, '%Y-%m-%dT%H:%M:%S')
       || CASE WHEN isinf(p.hi) THEN ' on (both open-ended)'
               ELSE ' to ' || strftime(p.hi, '%Y-%m-%dT%H:%M:%S') END
       || '; winner there: '
       || coalesce((SELECT string_agg(coalesce('record ' || w.detrend_index, 'none'), ' then '
                                      ORDER BY w.first)
                    FROM won AS w WHERE w.ra = p.ra AND w.rb = p.rb), 'none') AS detail
FROM pairs AS p
ORDER BY p.ccd, p.ra, p.rb
"""

# The image keys of resolve_detrends (filter class for flats/fringes, exposure class for darks),
# so that the next boundary after each image is found with one ASOF join.
_CROSSING_CANDIDATES = """
CREATE OR REPLACE TEMP TABLE _nl_cross_images AS
WITH i AS (
    SELECT visit, detector, filter, band, exposureTime, obs_time, night,
           detrend_fkey($type, filter, band) AS fkey
    FROM images
    WHERE detector IS NOT NULL AND obs_time IS NOT NULL AND exposureTime > 0
),
classes AS (
    SELECT DISTINCT detector::BIGINT AS ccd, fkey,
           CASE WHEN $type IN ('flat', 'fringe') THEN filter END AS filter,
           CASE WHEN $type IN ('flat', 'fringe') THEN band END AS band
    FROM i
),
bounds AS (
    SELECT DISTINCT c.ccd, c.fkey, x.b
    FROM (SELECT ccd, filter, tstart AS b FROM query_table($source)
          WHERE type = $type AND tstop_s > tstart_s
          UNION ALL
          SELECT ccd, filter, tstop FROM query_table($source)
          WHERE type = $type AND tstop_s > tstart_s AND tstop IS NOT NULL) AS x
    JOIN classes AS c
      ON x.ccd = c.ccd
     AND ($type NOT IN ('flat', 'fringe') OR x.filter = c.filter OR x.filter = c.band)
)
SELECT row_number() OVER () AS _nl_id, i.*
FROM i ASOF JOIN bounds AS bd
  ON i.detector = bd.ccd AND i.fkey = bd.fkey AND i.obs_time < bd.b
WHERE bd.b < i.obs_time + to_microseconds((i.exposureTime * 1e6)::BIGINT)
"""

# Each candidate image at its own time and at every boundary inside its exposure: resolving
# these synthetic images says whether the winner changes during the exposure.
_CROSSING_PROBES = """
CREATE OR REPLACE TEMP TABLE _nl_cross_probes AS
WITH bounds AS (
    SELECT DISTINCT ccd, filter, b FROM (
        SELECT ccd, filter, tstart AS b FROM query_table($source)
        WHERE type = $type AND tstop_s > tstart_s
        UNION ALL
        SELECT ccd, filter, tstop FROM query_table($source)
        WHERE type = $type AND tstop_s > tstart_s AND tstop IS NOT NULL)
)
SELECT _nl_id, visit, detector, filter, band, exposureTime, obs_time, night, obs_time AS t0
FROM _nl_cross_images
UNION ALL
SELECT DISTINCT i._nl_id, i.visit, i.detector, i.filter, i.band, i.exposureTime, bd.b, i.night,
       i.obs_time
FROM _nl_cross_images AS i JOIN bounds AS bd
  ON bd.ccd = i.detector
 AND ($type NOT IN ('flat', 'fringe') OR bd.filter = i.filter OR bd.filter = i.band)
 AND bd.b > i.obs_time
 AND bd.b < i.obs_time + to_microseconds((i.exposureTime * 1e6)::BIGINT)
"""

_CROSSINGS = """
WITH r AS (
    SELECT _nl_id, visit, detector, filter, band, exposureTime, obs_time, night, t0,
           detrend_index
    FROM resolve_detrends($type, mode := $mode, source := '_nl_cross_probes',
                          detrend_source := $source)
),
start AS (SELECT * FROM r WHERE obs_time = t0),
change AS (
    SELECT r._nl_id, arg_min(r.obs_time, r.obs_time) AS b,
           arg_min(r.detrend_index, r.obs_time) AS other
    FROM r JOIN start AS s USING (_nl_id)
    WHERE r.obs_time > r.t0 AND r.detrend_index IS DISTINCT FROM s.detrend_index
    GROUP BY r._nl_id
)
SELECT 'boundary crossing' AS finding, $type AS type, s.detector::INTEGER AS ccd,
       s.detrend_index AS record_index, c.other AS other_index, s.night::VARCHAR AS night,
       detrend_class($type, s.filter, s.band, s.exposureTime) AS filter_class,
       1::BIGINT AS images,
       'visit ' || coalesce(s.visit::VARCHAR, '?') || ': exposure of ' || s.exposureTime
       || ' s from ' || strftime(s.t0, '%Y-%m-%dT%H:%M:%S.%f') || ' crosses '
       || strftime(c.b, '%Y-%m-%dT%H:%M:%S') || ', where '
       || coalesce('record ' || s.detrend_index, 'no record') || ' gives way to '
       || coalesce('record ' || c.other, 'no record') AS detail
FROM start AS s JOIN change AS c USING (_nl_id)
ORDER BY s.night, s.detector, s.t0
"""

_COVERAGE = """
SELECT CASE WHEN none > 0 THEN 'gap' ELSE 'recent fallback' END AS finding, $type AS type,
       ccd::INTEGER AS ccd, NULL::BIGINT AS record_index, NULL::BIGINT AS other_index,
       night::VARCHAR AS night, filter_class,
       CASE WHEN none > 0 THEN none ELSE recent END AS images,
       CASE WHEN none > 0 THEN none || ' of ' || images || ' images have no exact ' || $type
            ELSE recent || ' images served by the recent fallback, the oldest '
                 || round(oldest_fallback_days, 1) || ' days after its end' END AS detail
FROM coverage($type, mode := $mode, detrend_source := $source)
WHERE none > 0 OR recent > 0
"""


def _probe_winners(con: duckdb.DuckDBPyConnection, detrend_type: str, source: str) -> None:
    """Temp table ``_nl_winners``: the winner at every boundary probe, in both modes."""
    params = {"type": detrend_type, "source": source}
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _nl_probes AS SELECT * FROM detrend_probes($type, "
        "detrend_source := $source)",
        params,
    )
    con.execute(_PROBE_WINNERS, params)


def shadowed(con: duckdb.DuckDBPyConnection, detrend_type: str, source: str = "detrends"):
    """Records of ``detrend_type`` that win at no boundary instant in either mode."""
    _probe_winners(con, detrend_type, source)
    return fetch_arrow(con.sql(_SHADOWED, params={"type": detrend_type, "source": source}))


def overlaps(con: duckdb.DuckDBPyConnection, detrend_type: str, source: str = "detrends"):
    """Pairs of records of one class whose ranges overlap, with the winners of the overlap."""
    _probe_winners(con, detrend_type, source)
    return fetch_arrow(con.sql(_OVERLAPS, params={"type": detrend_type, "source": source}))


def crossings(
    con: duckdb.DuckDBPyConnection, detrend_type: str, mode: str, source: str = "detrends"
):
    """Images whose exposure [t, t + exptime) spans a boundary where the winner changes."""
    params = {"type": detrend_type, "source": source}
    con.execute(_CROSSING_CANDIDATES, params)
    con.execute(_CROSSING_PROBES, params)
    return fetch_arrow(con.sql(_CROSSINGS, params={**params, "mode": mode}))


def file_findings(
    con: duckdb.DuckDBPyConnection, types: Sequence[str], source: str = "detrends"
) -> list[dict]:
    """Records whose file does not exist or cannot be read (the filename's exact bytes)."""
    rows = con.execute(
        "SELECT record_index, type, ccd, filename_bytes FROM query_table($source) "
        "WHERE list_contains($types, type) ORDER BY record_index",
        {"source": source, "types": list(types)},
    ).fetchall()
    found, seen = [], {}
    for index, kind, ccd, name in rows:
        name = bytes(name)
        if name not in seen:
            seen[name] = _file_problem(name)
        if seen[name] is not None:
            finding, cause = seen[name]
            shown = name.decode("utf-8", "backslashreplace")
            found.append(
                dict(
                    finding=finding,
                    type=kind,
                    ccd=ccd,
                    record_index=index,
                    detail=f"{shown}: {cause}",
                )
            )
    return found


def _file_problem(name: bytes) -> tuple[str, str] | None:
    try:
        with open(name, "rb") as f:
            f.read(1)
    except FileNotFoundError:
        return "missing file", "no such file"
    except OSError as exc:
        return "unreadable file", exc.strerror or type(exc).__name__
    return None


def audit(
    con: duckdb.DuckDBPyConnection,
    types: Sequence[str] = DETREND_TYPES,
    mode: str = "exact",
    *,
    images: bool = True,
    check_files: bool = False,
    source: str = "detrends",
) -> pa.Table:
    """Every finding, database first, then coverage of the images (when ``images``);
    ``source`` names the relation of records (``detrends_as_of`` for a past state).

    ``check_files`` also opens every record's file (filenames relative to the working
    directory, as the pipeline that reads them sees them).
    """
    import pyarrow as pa

    if mode not in MODES:
        raise UsageError(f"--mode {mode!r}: expected exact or recent")
    for t in types:
        if t not in DETREND_TYPES:
            raise UsageError(f"--type {t!r}: expected one of {', '.join(DETREND_TYPES)}")
    parts = [
        fetch_arrow(
            con.sql(
                "SELECT finding, type, ccd, record_index, other_index, NULL::VARCHAR AS night, "
                "NULL::VARCHAR AS filter_class, NULL::BIGINT AS images, detail "
                "FROM detrend_record_findings(detrend_source := $source) "
                "WHERE list_contains($types, type)",
                params={"types": list(types), "source": source},
            )
        )
    ]
    for t in types:
        _probe_winners(con, t, source)  # shared by the overlaps and the shadowed
        parts.append(fetch_arrow(con.sql(_OVERLAPS, params={"type": t, "source": source})))
        parts.append(fetch_arrow(con.sql(_SHADOWED, params={"type": t, "source": source})))
    schema = parts[0].schema
    if check_files:
        rows = file_findings(con, types, source)
        parts.append(pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema))
    if images:
        for t in types:
            params = {"type": t, "mode": mode, "source": source}
            parts.append(fetch_arrow(con.sql(_COVERAGE, params=params)))
        for t in types:
            parts.append(crossings(con, t, mode, source))
    return pa.concat_tables([p.select(schema.names).cast(schema) for p in parts])


def failing(findings: pa.Table, fail_on: Sequence[str]) -> int:
    """How many findings are of a kind named by ``--fail-on``."""
    kinds = findings.column("finding").to_pylist()
    return sum(1 for k in kinds if k in fail_on)
