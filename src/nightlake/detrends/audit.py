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
from nightlake.lake import fetch_arrow

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

FINDINGS = (
    "empty range",
    "open-ended",
    "duplicate filename",
    "identical record",
    "shadowed",
    "gap",
    "recent fallback",
)

_SHADOWED = """
SELECT 'shadowed' AS finding, type, ccd, record_index, NULL::BIGINT AS other_index,
       NULL AS night, NULL AS filter_class, NULL::BIGINT AS images,
       'wins at no instant in either mode (a dead registration)' AS detail
FROM query_table($source)
WHERE type = $type AND tstop_s > tstart_s
  AND record_index NOT IN (SELECT detrend_index FROM _nl_winners WHERE detrend_index IS NOT NULL)
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


def shadowed(con: duckdb.DuckDBPyConnection, detrend_type: str, source: str = "detrends"):
    """Records of ``detrend_type`` that win at no boundary instant in either mode."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _nl_probes AS SELECT * FROM detrend_probes($type, "
        "detrend_source := $source)",
        {"type": detrend_type, "source": source},
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _nl_winners AS "
        "SELECT detrend_index FROM resolve_detrends($type, mode := 'exact', "
        "source := '_nl_probes', detrend_source := $source) UNION "
        "SELECT detrend_index FROM resolve_detrends($type, mode := 'recent', "
        "source := '_nl_probes', detrend_source := $source)",
        {"type": detrend_type, "source": source},
    )
    return fetch_arrow(con.sql(_SHADOWED, params={"type": detrend_type, "source": source}))


def audit(
    con: duckdb.DuckDBPyConnection,
    types: Sequence[str] = DETREND_TYPES,
    mode: str = "exact",
    *,
    images: bool = True,
    source: str = "detrends",
) -> pa.Table:
    """Every finding, database first, then coverage of the images (when ``images``);
    ``source`` names the relation of records (``detrends_as_of`` for a past state)."""
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
        parts.append(shadowed(con, t, source))
    if images:
        for t in types:
            params = {"type": t, "mode": mode, "source": source}
            parts.append(fetch_arrow(con.sql(_COVERAGE, params=params)))
    schema = parts[0].schema
    return pa.concat_tables([p.select(schema.names).cast(schema) for p in parts])


def failing(findings: pa.Table, fail_on: Sequence[str]) -> int:
    """How many findings are of a kind named by ``--fail-on``."""
    kinds = findings.column("finding").to_pylist()
    return sum(1 for k in kinds if k in fail_on)
