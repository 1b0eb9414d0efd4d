"""Query results as astropy tables, with the units and descriptions of their source columns.

A result column gets the unit, description and format of the lake column it comes from:
by name through ``SELECT *``, through an alias (``AIRMASS_1 AS am``), a qualified name,
subqueries and CTEs. The lineage is read from DuckDB's own parse tree
(``json_serialize_sql``), not from the query text. A computed column carries none, unless it
is a call of a macro whose comment declares a unit (``… [unit: arcsec]``), or a column of the
``obscore`` view (units from ``obscore_columns()``).

Files: ECSV (streamed batch by batch), FITS and VOTable (built in memory, refused above
:data:`IN_MEMORY_ROWS` rows), each written to a temp file and renamed into place.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nightlake.errors import QueryError, UsageError

if TYPE_CHECKING:
    import pyarrow as pa

    from nightlake.query.lake import Lake

ASTRO_FORMATS = ("ecsv", "fits", "votable")
EXTENSIONS = {
    ".ecsv": "ecsv",
    ".fits": "fits",
    ".fit": "fits",
    ".vot": "votable",
    ".xml": "votable",
    ".votable": "votable",
}
#: FITS and VOTable are written from one in-memory table; larger results must go to ECSV
#: (streamed) or Parquet.
IN_MEMORY_ROWS = 2_000_000
OBSCORE_VIEW = "CREATE OR REPLACE VIEW obscore AS SELECT * FROM obscore_rows();"
_UNIT_TAG = re.compile(r"\[unit:\s*([^\]]+)\]")
# table macros whose rows are rows of their ``source`` (same column names and meaning)
_PASSTHROUGH = {
    "images_at": {"distance_deg": {"unit": "deg"}},
    "images_in_cone": {
        "distance_deg": {"unit": "deg", "description": "angular distance to the footprint"}
    },
}


#: the columns of ``images`` that ``obscore_rows`` reads
OBSCORE_NEEDS = frozenset(
    "visit detector night target band ra dec psfsigma mjd_start exposuretime ra_tl dec_tl "
    "ra_tr dec_tr ra_br dec_br ra_bl dec_bl".split()
)


def create_derived_views(con) -> None:
    """Views defined over ``images`` by macros of ``sql/`` (run after the macros load):
    ``obscore`` when ``images`` has the columns it maps (a view binds when created)."""
    import duckdb

    try:  # binds images alone (duckdb_columns() would bind every view)
        described = con.execute("SELECT * FROM images LIMIT 0").description
    except duckdb.CatalogException:  # a lake without partitions has no images view
        return
    if OBSCORE_NEEDS <= {d[0].lower() for d in described}:
        con.execute(OBSCORE_VIEW)


def obscore_view_sql(lake: Lake) -> str:
    """The ``obscore`` view for ``init-sql``: empty unless the lake's images have its columns."""
    import pyarrow.parquet as pq

    files = lake.image_files()
    if not files:
        return ""
    names = {n.lower() for n in pq.read_schema(files[0]).names} | {"target", "night"}
    return OBSCORE_VIEW if OBSCORE_NEEDS <= names else ""


def astro_format(fmt: str | None, output: str | os.PathLike[str] | None) -> str | None:
    """``ecsv``/``fits``/``votable`` when ``--format`` or the extension of ``-o`` asks for one."""
    if fmt is not None:
        return fmt.lower() if fmt.lower() in ASTRO_FORMATS else None
    if output is not None:
        return EXTENSIONS.get(Path(output).suffix.lower())
    return None


# -- column metadata ---------------------------------------------------------------------------
#: what a lake column's field metadata gives its result columns: what astropy shows, and
#: what restores the source column's form (ECSV datatype, JSON/array subtype, Time)
_FIELD_KEYS = (
    "unit",
    "description",
    "format",
    "ecsv_datatype",
    "subtype",
    "astropy_time",
    "astropy_time_format",
    "astropy_time_scale",
)


def lake_fields(lake: Lake) -> dict[str, dict[str, str]]:
    """The field metadata (:data:`_FIELD_KEYS`) of every column of ``images``, by lower-case
    name."""
    import pyarrow.parquet as pq

    fields: dict[str, dict[str, str]] = {}
    for path in lake.image_files():
        for field in pq.read_schema(path):
            if field.name.lower() in fields:
                continue
            md = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
            fields[field.name.lower()] = {k: md[k] for k in _FIELD_KEYS if k in md}
    return fields


def lake_fingerprint(lake: Lake) -> str:
    """SHA-256 over the fingerprints of every source the lake's partitions were built from."""
    import hashlib

    from nightlake.ingest.compact import partition_records

    digest = hashlib.sha256()
    for _, _, record, _ in partition_records(lake):  # a compacted file's nights too
        for source in record.get("sources", []):
            digest.update(f"{source.get('sha256')}:{source.get('size')}\n".encode())
    return digest.hexdigest()


def _macro_units(con) -> dict[str, dict[str, str]]:
    rows = con.execute(
        "SELECT function_name, comment FROM duckdb_functions() "
        "WHERE function_type = 'macro' AND comment IS NOT NULL"
    ).fetchall()
    return {
        name.lower(): {"unit": m.group(1).strip()}
        for name, comment in rows
        if (m := _UNIT_TAG.search(comment))
    }


def _obscore_fields(con) -> dict[str, dict[str, str]]:
    rows = con.execute("SELECT name, unit, ucd, description FROM obscore_columns()").fetchall()
    return {
        name: {k: v for k, v in (("unit", unit), ("ucd", ucd), ("description", d)) if v}
        for name, unit, ucd, d in rows
    }


class _Lineage:
    """Where the columns of a parsed query come from (name -> metadata, lower-case keys)."""

    def __init__(self, relations: dict[str, dict], macros: dict[str, dict]) -> None:
        self.relations = relations
        self.macros = macros

    def node(self, node: dict, ctes: dict[str, dict]) -> dict[str, dict]:
        ctes = dict(ctes)
        for entry in (node.get("cte_map") or {}).get("map", []):
            ctes[entry["key"].lower()] = entry["value"]["query_node"]
        if node.get("type") == "SET_OPERATION_NODE":
            return self.node(node["left"], ctes)
        if node.get("type") != "SELECT_NODE":
            return {}
        source = self.table(node.get("from_table") or {}, ctes)
        out: dict[str, dict] = {}
        for expr in node.get("select_list", []):
            kind = expr.get("class")
            if kind == "STAR" and not expr.get("columns"):
                replaced = {r.get("name", "").lower() for r in expr.get("replace_list") or []}
                out.update({k: v for k, v in source.items() if k not in replaced})
            elif kind == "COLUMN_REF":
                name = expr.get("alias") or expr["column_names"][-1]
                if expr["column_names"][-1].lower() in source:
                    out[name.lower()] = source[expr["column_names"][-1].lower()]
            elif kind == "FUNCTION" and expr.get("alias"):
                if expr.get("function_name", "").lower() in self.macros:
                    out[expr["alias"].lower()] = self.macros[expr["function_name"].lower()]
        return out

    def table(self, ref: dict, ctes: dict[str, dict]) -> dict[str, dict]:
        kind = ref.get("type")
        if kind == "BASE_TABLE":
            name = ref.get("table_name", "").lower()
            if name in ctes:
                return self.node(ctes[name], {k: v for k, v in ctes.items() if k != name})
            return self.relations.get(name, {})
        if kind == "SUBQUERY":
            return self.node(ref["subquery"]["node"], ctes)
        if kind == "JOIN":
            return {**self.table(ref["right"], ctes), **self.table(ref["left"], ctes)}
        if kind == "TABLE_FUNCTION":
            function = ref.get("function", {})
            name = function.get("function_name", "").lower()
            if name in _PASSTHROUGH:
                source = "images"
                for arg in function.get("children") or function.get("arguments") or []:
                    expr = arg.get("expression", arg)
                    if expr.get("alias") == "source" and expr.get("class") == "CONSTANT":
                        source = str(expr["value"]["value"]).lower()
                return {**self.relations.get(source, {}), **_PASSTHROUGH[name]}
            if name == "obscore_rows":
                return self.relations.get("obscore", {})
        return {}


def column_metadata(con, lake: Lake, query: str) -> dict[str, dict[str, str]]:
    """unit/description/format/ucd of each result column of ``query`` that has a source."""
    try:
        # fetchall: a result left open would make DuckDB refuse the statement run next
        (row,) = con.execute("SELECT json_serialize_sql($q)", {"q": query}).fetchall()
        parsed = json.loads(row[0])
    except Exception:  # noqa: BLE001 - not serialisable (PRAGMA, SET…): no metadata
        return {}
    if parsed.get("error") or len(parsed.get("statements", [])) != 1:
        return {}
    relations = {"images": lake_fields(lake)}
    try:
        relations["obscore"] = _obscore_fields(con)
    except Exception:  # noqa: BLE001 - a connection without the macros
        pass
    return _Lineage(relations, _macro_units(con)).node(parsed["statements"][0]["node"], {})


# -- astropy tables ---------------------------------------------------------------------------
def _column(array: pa.ChunkedArray, name: str, meta: dict[str, str]):
    """One astropy column (masked where Arrow has nulls) with its unit and description, in
    the form its source ECSV column had (:func:`_source_values`)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from astropy.table import Column, MaskedColumn

    array = _source_type(array, meta)
    type_ = array.type
    mask = None
    if array.null_count:
        mask = pc.is_null(array).to_numpy(zero_copy_only=False)
    if pa.types.is_timestamp(type_) or pa.types.is_date(type_):
        return _time_column(array, meta, mask)
    values = _source_values(array, meta)
    if values is not None:
        mask = None  # JSON null is the value None, as astropy reads it
    elif pa.types.is_nested(type_) or pa.types.is_map(type_):
        values = np.array(
            [json.dumps(v, default=str) if v is not None else "" for v in array.to_pylist()],
            dtype=str,
        )
    elif pa.types.is_string(type_) or pa.types.is_large_string(type_):
        values = np.array([v if v is not None else "" for v in array.to_pylist()], dtype=str)
    elif pa.types.is_boolean(type_) or pa.types.is_integer(type_) or pa.types.is_floating(type_):
        filler = False if pa.types.is_boolean(type_) else 0
        values = (
            array.fill_null(filler).to_numpy(zero_copy_only=False)
            if mask is not None
            else array.to_numpy()
        )
    else:
        values = np.array([str(v) if v is not None else "" for v in array.to_pylist()], dtype=str)
    kwargs = dict(
        name=name,
        unit=meta.get("unit"),
        description=meta.get("description"),
        format=meta.get("format"),
    )
    if meta.get("ucd"):
        kwargs["meta"] = {"ucd": meta["ucd"]}
    cls = MaskedColumn if mask is not None else Column
    extra = {"mask": mask} if mask is not None else {}
    try:
        return cls(values, **extra, **kwargs)
    except ValueError:  # a unit astropy cannot parse: keep the column, name the unit in meta
        kwargs.pop("unit")
        kwargs.setdefault("meta", {})["unit_text"] = meta.get("unit")
        return cls(values, **extra, **kwargs)


def _source_type(array: pa.ChunkedArray, meta: dict[str, str]) -> pa.ChunkedArray:
    """A column straight from the lake in its source ECSV datatype: a partition key read
    from an ``int64`` column (the view's keys are VARCHAR), a ``float16`` DuckDB widened.
    Left as it is when the values do not fit (another source wrote the column)."""
    import pyarrow as pa

    from nightlake.ingest.ecsv import ECSV_TYPES

    wanted = ECSV_TYPES.get(meta.get("ecsv_datatype", ""))
    if wanted is None or meta.get("subtype") or _time_attributes(meta) or array.type == wanted:
        return array
    try:
        return array.cast(wanted)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return array


def _source_values(array: pa.ChunkedArray, meta: dict[str, str]):
    """The values of a ``subtype: json`` or array column as astropy reads them (an object
    column of parsed JSON, an n-d array, an object column of 1-d arrays), else ``None``."""
    import numpy as np

    from nightlake.ingest.ecsv import ARRAY_SUBTYPE

    subtype = meta.get("subtype") or ""
    shape = ARRAY_SUBTYPE.match(subtype)
    if subtype != "json" and (shape is None or array.null_count):
        return None
    rows = array.to_pylist()
    values = np.empty(len(rows), dtype=object)
    if subtype == "json":
        values[:] = [json.loads(v) if isinstance(v, str) else v for v in rows]
        return values
    base = np.dtype(str) if shape["base"] == "string" else np.dtype(shape["base"])
    if "null" not in shape["shape"]:
        return np.array(rows, dtype=base)
    for i, row in enumerate(rows):  # not values[:] = […]: numpy would merge equal lengths
        values[i] = np.array(row, dtype=base)
    return values


def _time_attributes(meta: dict[str, str]) -> dict[str, Any]:
    """The attributes of the Time mixin a column was read from (``{}`` for none); lakes
    written before ``astropy_time`` recorded only format and scale."""
    if "astropy_time" in meta:
        return json.loads(meta["astropy_time"])
    if "astropy_time_format" in meta:
        return {"format": meta["astropy_time_format"], "scale": meta["astropy_time_scale"]}
    return {}


def _time_column(array: pa.ChunkedArray, meta: dict[str, str], mask):
    """A timestamp column as an astropy Time: in the format, scale and precision of the
    Time it was read from, else UTC ``datetime64``."""
    import numpy as np
    import pyarrow as pa
    from astropy.time import Time

    from nightlake.ingest.taitime import datetime64_to_utc_jd

    values = array.cast(pa.timestamp("us")).fill_null(0).to_numpy(zero_copy_only=False)
    # astropy parses datetime64 value by value in Python; ERFA does the same at once
    utc = Time(*datetime64_to_utc_jd(values), format="jd", scale="utc")
    attributes = _time_attributes(meta) or {"format": "datetime64", "scale": "utc"}
    try:
        col = getattr(utc, attributes["scale"])
        col.format = attributes["format"]
        for key in ("precision", "in_subfmt", "out_subfmt"):
            if key in attributes:
                setattr(col, key, attributes[key])
    except Exception:  # noqa: BLE001 - astropy has several errors for what it cannot give
        col = utc
        col.format = "datetime64"
    if mask is not None:
        col[mask] = np.ma.masked
    col.info.description = meta.get("description")
    return col


def to_astropy(
    table: pa.Table,
    metadata: dict[str, dict[str, str]],
    meta: dict[str, Any] | None = None,
    *,
    quantity: bool = True,
):
    """An Arrow table as a ``QTable`` (or ``Table`` with ``quantity=False``) with units."""
    import warnings

    from astropy.table import QTable, Table
    from astropy.units import UnitsWarning

    from nightlake.columns import unique_names

    cls = QTable if quantity else Table
    names = unique_names(table.column_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnitsWarning)
        columns = [
            _column(table.column(i), name, metadata.get(original.lower(), {}))
            for i, (name, original) in enumerate(zip(names, table.column_names))
        ]
    return cls(columns, names=names, meta=meta or {}, copy=False)


def query_table(
    lake: Lake, query: str, params: dict[str, Any] | None = None, *, quantity: bool = True
):
    """Run ``query`` on ``lake`` and return an astropy ``QTable`` (or ``Table``)."""
    from nightlake.sql import fetch_arrow

    no_rows = "the statement returns no rows (use Lake.sql for SET, …)"
    with _relation(lake, query, params, no_rows) as (last, metadata):
        result = fetch_arrow(last.relation)
    return to_astropy(result, metadata, _table_meta(lake, query, params), quantity=quantity)


@contextmanager
def _relation(
    lake: Lake, query: str, params: dict[str, Any] | None, no_rows: str
) -> Iterator[tuple[Any, dict[str, dict[str, str]]]]:
    """``query``'s last statement (:class:`nightlake.query.stream.Relation`) on a read-only
    cursor of ``lake``, with its columns' metadata; DuckDB's errors, also those of reading
    the relation, as :class:`QueryError` lines (those of an Arrow stream: :func:`_batches`)."""
    from nightlake.query.stream import query_errors, stream_relation

    con = lake.cursor()
    try:
        metadata = column_metadata(con, lake, query)
        # nightlake sql's checks, statements and error lines (positions in the whole script)
        last = stream_relation(con, query, params)
        if last.relation is None:
            raise QueryError(no_rows)
        with query_errors(query, last.text, last.start, con=con):
            yield last, metadata
    finally:
        con.close()


def _table_meta(lake: Lake, query: str, params: dict[str, Any] | None) -> dict[str, Any]:
    meta = {
        "query": query,
        "lake": str(lake.path.resolve()),
        "lake_fingerprint": lake_fingerprint(lake),
    }
    if params:
        meta["params"] = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in params.items()
        }
    return meta


# -- files -----------------------------------------------------------------------------------
def write_query(
    lake: Lake,
    query: str,
    params: dict[str, Any] | None,
    path: str | os.PathLike[str],
    fmt: str,
    *,
    batch_rows: int = 100_000,
) -> int:
    """Write the result of ``query`` to ``path`` as ECSV, FITS or VOTable, atomically.

    ECSV is written ``batch_rows`` rows at a time, so its size is not bounded by memory.
    """
    from nightlake.sql import fetch_arrow

    if fmt not in ASTRO_FORMATS:
        raise UsageError(f"unknown astropy format {fmt!r}: {', '.join(ASTRO_FORMATS)}")
    if not Path(path).resolve().parent.is_dir():
        raise UsageError(f"{path}: the directory {Path(path).parent} does not exist")
    with _relation(lake, query, params, "the statement returns no rows") as (last, metadata):
        meta = _table_meta(lake, query, params)
        relation = last.relation
        if fmt == "ecsv":
            return _write_ecsv(_batches(last, batch_rows), metadata, meta, path)
        rows = relation.shape[0] if hasattr(relation, "shape") else None
        if rows is not None and rows > IN_MEMORY_ROWS:
            raise UsageError(
                f"{path}: {rows} rows is more than {fmt} is written for "
                f"({IN_MEMORY_ROWS}, built in memory); write .ecsv (streamed) "
                "or .parquet instead"
            )
        table = to_astropy(fetch_arrow(relation), metadata, meta)
    _write_whole(table, fmt, path)
    return len(table)


def _batches(last, rows: int) -> Iterable[pa.Table]:
    """The result (a :class:`nightlake.query.stream.Relation`) in pieces of about ``rows``
    rows (DuckDB hands out a batch per partition file, often a few hundred rows; astropy
    writes a piece at a cost per column); an empty result is one empty piece (its header)."""
    import pyarrow as pa

    from nightlake.query.stream import query_errors

    relation = last.relation
    reader = (
        relation.to_arrow_reader(rows)
        if hasattr(relation, "to_arrow_reader")
        else relation.fetch_record_batch(rows)
    )
    pending: list[pa.RecordBatch] = []
    size = 0
    # DuckDB's errors while rows stream surface through Arrow (OSError); only the reading is
    # inside, not the writer of the pieces
    with query_errors(last.query, last.text, last.start, also=(pa.ArrowException, OSError)):
        for batch in reader:
            pending.append(batch)
            size += batch.num_rows
            if size >= rows:
                yield pa.Table.from_batches(pending, reader.schema)
                pending, size = [], 0
    if pending or size == 0:
        yield pa.Table.from_batches(pending or [_empty_batch(reader.schema)], reader.schema)


def _empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    import pyarrow as pa

    return pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)


def _write_whole(table, fmt: str, path) -> None:
    import warnings

    from astropy.table import Table

    from nightlake.files import atomic_replace

    out = _json_text(Table(table))
    with atomic_replace(path) as tmp, warnings.catch_warnings():
        # units FITS/VOTable cannot spell and long keywords: astropy handles them, and a
        # warning per column would bury the one line the CLI prints
        warnings.simplefilter("ignore")
        if fmt == "fits":
            # FITS keywords are short and plain: the query and lake go in as comments
            query = out.meta.pop("query", "")
            out.meta.pop("params", None)
            out.meta["comments"] = [f"query: {line}" for line in query.splitlines()]
            out.write(tmp, format="fits")
        else:
            from astropy.table import Column
            from astropy.time import Time

            for name in out.colnames:  # VOTable takes no Time column: ISO 8601 text (UTC)
                if isinstance(out[name], Time):
                    out[name] = Column(out[name].utc.isot, description=out[name].info.description)
            out.write(tmp, format="votable")


def _json_text(table):
    """Object columns (JSON values, variable-length arrays), which FITS and VOTable cannot
    hold, as JSON text."""
    import numpy as np
    from astropy.table import Column

    def text(value) -> str:
        return json.dumps(value.tolist() if isinstance(value, np.ndarray) else value)

    for name in table.colnames:
        col = table[name]
        if getattr(col, "dtype", None) is not None and col.dtype.kind == "O":
            values = np.array([text(v) for v in col], dtype=str)
            table[name] = Column(values, name=name, description=col.info.description)
    return table


def _write_ecsv(pieces: Iterable[pa.Table], metadata, meta, path) -> int:
    """The header from the first piece, then every piece's rows (astropy writes each)."""
    import io
    import warnings

    from astropy.units import UnitsWarning

    from nightlake.files import atomic_replace

    rows = 0
    with (
        atomic_replace(path) as tmp,
        open(tmp, "w", encoding="utf-8") as sink,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", UnitsWarning)
        first = True
        for piece in pieces:
            if piece.num_rows == 0 and not first:
                continue
            table = to_astropy(piece, metadata, meta, quantity=False)
            text = io.StringIO()
            table.write(text, format="ascii.ecsv")
            lines = text.getvalue().splitlines(keepends=True)
            if first:
                sink.writelines(lines)
                first = False
            else:
                # skip the header and the column-name line: only the rows
                body = next(i for i, line in enumerate(lines) if not line.startswith("#"))
                sink.writelines(lines[body + 1 :])
            rows += piece.num_rows
    return rows
