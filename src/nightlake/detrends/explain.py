"""Why this detrend and not another: every record of a type for one image, with its verdict.

The verdicts are computed by the SQL table macro ``explain_detrend`` (``sql/45_explain.sql``);
this module only finds the image (a FITS file, a lake row, or explicit values), runs the macro
on the lake's ``detrends`` view or on a DetReg file read into memory, and prints the answer.
``nightlake explain`` and ``detsearch --explain`` both come here.
"""

from __future__ import annotations

import json
from typing import IO, TYPE_CHECKING

from nightlake.detrends.rules import DETREND_TYPES, MODES, Image, describe_request
from nightlake.detrends.times import iso_utc_us
from nightlake.errors import InputError, UsageError
from nightlake.sql import fetch_arrow

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

VERDICTS = (
    "chosen",
    "superseded",
    "farther exptime",
    "expired",
    "not yet valid",
    "wrong filter",
    "no image exptime",
    "empty range",
)
FORMATS = ("table", "json")

_QUERY = """
SELECT * FROM explain_detrend($type, $ccd, $filter, make_timestamp($time_us), mode := $mode,
                              exptime := $exptime, band := $band, detrend_source := $source)
"""


def db_connection(db) -> duckdb.DuckDBPyConnection:
    """An in-memory connection whose ``detrends`` table is the records of ``db`` (read_db)."""
    import duckdb

    from nightlake.sql import load_macros

    con = duckdb.connect(":memory:")
    con.execute("SET enable_progress_bar = false")
    load_macros(con)
    add_db_records(con, db, "detrends")
    return con


def add_db_records(con: duckdb.DuckDBPyConnection, db, name: str = "detreg_records") -> str:
    """Store the records of ``db`` as the temp table ``name`` (the mirror's columns)."""
    from nightlake.detrends.sync import records_table

    con.register("_nl_records", records_table(db))
    con.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS SELECT * FROM _nl_records')
    con.unregister("_nl_records")
    return name


def check_request(detrend_type: str, mode: str) -> None:
    if detrend_type not in DETREND_TYPES:
        raise UsageError(f"--type {detrend_type!r}: expected one of {', '.join(DETREND_TYPES)}")
    if mode not in MODES:
        raise UsageError(f"--mode {mode!r}: expected exact or recent")


def explain(
    con: duckdb.DuckDBPyConnection,
    detrend_type: str,
    image: Image,
    mode: str = "exact",
    *,
    all_ccds: bool = False,
    source: str = "detrends",
) -> pa.Table:
    """The rows of ``explain_detrend`` for ``image`` (every CCD with ``all_ccds``)."""
    check_request(detrend_type, mode)
    if image.time_us is None:
        raise InputError(image.name or "image", "no observation time; give --time")
    if image.ccd is None and not all_ccds:
        raise InputError(image.name or "image", "no CCD; give --ccd N (or --all)")
    params = {
        "type": detrend_type,
        "ccd": None if all_ccds else int(image.ccd),
        "filter": image.filter,
        "time_us": int(image.time_us),
        "mode": mode,
        "exptime": image.exptime,
        "band": image.band,
        "source": source,
    }
    return fetch_arrow(con.sql(_QUERY, params=params))


def lake_image(con: duckdb.DuckDBPyConnection, visit: int, detector: int) -> Image:
    """The image row ``visit``/``detector`` of the lake's ``images`` view."""
    rows = con.execute(
        "SELECT detector, epoch_us(obs_time), filter, band, exposureTime FROM images "
        "WHERE visit = $visit AND detector = $detector LIMIT 2",
        {"visit": visit, "detector": detector},
    ).fetchall()
    name = f"visit {visit} detector {detector}"
    if not rows:
        raise InputError(name, "no such image in the lake")
    ccd, time_us, filt, band, exptime = rows[0]
    return Image(ccd=ccd, time_us=time_us, filter=filt, band=band, exptime=exptime, name=name)


def explanation(table: pa.Table, image: Image, detrend_type: str, mode: str) -> dict:
    """One explanation as plain values (times ISO-8601 UTC; open-ended tstop → None)."""
    rows = table.to_pylist()
    for row in rows:
        for key in ("tstart", "tstop", "treg"):
            if row[key] is not None:
                row[key] = row[key].strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "image": image.name,
        "ccd": image.ccd,
        "filter": image.filter,
        "band": image.band,
        "exptime": image.exptime,
        "time": iso_utc_us(image.time_us) if image.time_us is not None else None,
        "type": detrend_type,
        "mode": mode,
        "request": describe_request(detrend_type, image, mode),
        "records": rows,
    }


def write_explanations(answers: list[dict], fmt: str, out: IO[str]) -> None:
    """Print explanations: ``json`` (one object, a list for several) or a text table each."""
    if fmt == "json":
        out.write(json.dumps(answers[0] if len(answers) == 1 else answers, indent=1) + "\n")
        return
    for answer in answers:
        _write_text(answer, out)


def _write_text(answer: dict, out: IO[str]) -> None:
    rows = answer["records"]
    where = f"{answer['image']}: " if answer["image"] else ""
    out.write(f"{where}{answer['request']}\n")
    if not rows:
        out.write("  no records of this type for this CCD\n")
        return
    if not any(r["verdict"] == "chosen" for r in rows):
        out.write("  nothing chosen\n")
    from nightlake.query.output import write_table

    cells = [
        (
            r["ccd"],
            f"#{r['record_index']}",
            r["verdict"],
            f"{r['tstart']} .. {r['tstop'] or 'never'}",  # as detregister list shows it
            r["filename"],
            r["reason"],
        )
        for r in rows
    ]
    head = ("ccd", "record", "verdict", "validity", "filename", "reason")
    write_table(head, [cells], out.write, numeric=[True] + [False] * 5, cell_width=None)


def run_detsearch_explain(db, args, time_us: int | None, out: IO[str]) -> int:
    """``detsearch --explain``: explain each ``--image`` (or the --ccd/--time/... given)."""
    from nightlake.detrends.images import band_of, read_image
    from nightlake.detrends.search import expand_images

    if args.type is None:
        raise UsageError("--type is required with --explain (bias, dark, flat, fringe or mask)")
    if args.image:
        paths, elixir_ccd, elixir_layout = expand_images(args.image)
        ccd = args.ccd if args.ccd is not None else elixir_ccd
        images = [
            read_image(
                p,
                ccd=ccd,
                layout=args.layout or elixir_layout,
                filter=args.filter,
                time_us=time_us,
                exptime=args.exptime,
            )
            for p in paths
        ]
    elif time_us is not None:
        images = [Image(args.ccd, time_us, args.filter, band_of(args.filter), args.exptime)]
    else:
        raise UsageError("--explain needs --image FILE, or --time (with --ccd, --filter …)")
    con = db_connection(db)
    answers = [
        explanation(
            explain(con, args.type, img, args.mode, all_ccds=args.all), img, args.type, args.mode
        )
        for img in images
    ]
    write_explanations(answers, "json" if args.format == "json" else "table", out)
    return 0
