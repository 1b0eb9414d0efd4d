"""``detsearch``: which detrend applies to this image, from the shell.

The console script ``detsearch`` and ``nightlake detsearch`` both run :func:`run`; the search
itself is :mod:`nightlake.detrends.search`. It parses
its arguments with argparse rather than typer because it must start fast (it is called once
per image by pipeline shell scripts): nothing here imports typer, duckdb, pyarrow or astropy
(astropy only for an image time that is not UTC). Elixir's single-dash spelling works::

    detsearch -image example.fits 00 split -type flat        # CCD and layout after the image
    detsearch --image example.fits --ccd 0 --type flat --mode recent --format json
    detsearch --image @list.txt --type bias                  # image<TAB>detrend per line
    detsearch --type flat --ccd 5 --time 2019-04-02T05:13:00 # list records, no image
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence

from nightlake.detrends.rules import (
    DETREND_TYPES,
    FILTERED_TYPES,
    MODES,
    Choice,
    Image,
    describe_request,
)
from nightlake.detrends.search import expand_images, list_records, record, search
from nightlake.detrends.times import iso_utc_us, parse_time_us
from nightlake.errors import InputError, NightlakeError, UsageError, one_line

FORMATS = ("short", "json", "table")
_LONG_OPTIONS = (
    "image",
    "type",
    "mode",
    "filter",
    "ccd",
    "time",
    "db",
    "format",
    "trange",
    "treg",
    "tstop",
    "tstart",
    "exptime",
    "layout",
    "explain",
    "all",
    "help",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one error line through nightlake's error path
        raise UsageError(message)


def build_parser(prog: str = "detsearch") -> argparse.ArgumentParser:
    p = _Parser(
        prog=prog,
        description="Find the detrend (bias, dark, flat, fringe, mask) that "
        "applies to a science image, or list detrend records.",
        epilog="Elixir spelling: detsearch -image example.fits 00 split -type flat",
    )
    p.add_argument(
        "--image",
        nargs="+",
        action="extend",
        metavar="FILE",
        help="Image(s); @LIST reads one path per line. After the images: CCD number "
        "and 'split' or 'mef' (Elixir spelling).",
    )
    p.add_argument("--type", choices=DETREND_TYPES, help="Detrend type.")
    p.add_argument(
        "--mode",
        choices=MODES,
        default="exact",
        help="exact: validity covers the image time; recent: else the latest ended.",
    )
    p.add_argument("--ccd", type=int, help="CCD number (default: CCDNUM of the header).")
    p.add_argument(
        "--layout",
        choices=("split", "mef"),
        help="split: one file per CCD; mef: the CCD's extension of a multi-extension file.",
    )
    p.add_argument("--filter", help="Filter name (default: FILTER of the header).")
    p.add_argument("--exptime", type=float, help="Exposure time in s (darks; default: EXPTIME).")
    p.add_argument(
        "--time",
        help="Image time, ISO-8601 UTC or Unix seconds (default: from the "
        "header); without --image: list the records valid then.",
    )
    p.add_argument(
        "--trange",
        nargs=2,
        metavar=("START", "STOP"),
        help="List the records whose validity overlaps [START, STOP).",
    )
    p.add_argument("--db", help="DetReg database (default: $NIGHTLAKE_DETREG).")
    p.add_argument(
        "--as-of",
        metavar="TIME",
        help="Answer from the database as it was at TIME (ISO-8601 UTC or Unix seconds), "
        "replayed from its journal.",
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="short",
        help="short: the filename alone (image<TAB>filename for several images).",
    )
    p.add_argument(
        "--explain",
        action="store_true",
        help="Every record of --type for the image, with why it was or was not chosen.",
    )
    p.add_argument("--all", action="store_true", help="With --explain: every CCD.")
    times = p.add_mutually_exclusive_group()
    times.add_argument(
        "--tstart",
        dest="show",
        action="store_const",
        const="tstart",
        help="Listing shows tstart (the default).",
    )
    times.add_argument(
        "--tstop", dest="show", action="store_const", const="tstop", help="Listing shows tstop."
    )
    times.add_argument(
        "--treg", dest="show", action="store_const", const="treg", help="Listing shows treg."
    )
    return p


def elixir_argv(argv: Sequence[str], options: Iterable[str] = _LONG_OPTIONS) -> list[str]:
    """Elixir's single-dash options (``-image``, ``-type=flat`` …) as their ``--`` forms; ``-h``
    as ``--help``. Shared by ``detsearch`` and ``detregister``."""
    options = set(options)
    out = []
    for arg in argv:
        name, eq, value = arg[1:].partition("=")
        if arg.startswith("-") and not arg.startswith("--") and name in options:
            arg = f"--{name}{eq}{value}"
        elif arg == "-h":
            arg = "--help"
        out.append(arg)
    return out


def time_option(text: str) -> int:
    """A time option (ISO-8601 UTC or Unix seconds) as Unix µs; a bad one is a usage error."""
    try:
        return parse_time_us(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def open_db(db: str | None, as_of: str | None = None):
    """The database of ``--db`` or ``$NIGHTLAKE_DETREG``, read and validated (or replayed
    from its journal as of ``as_of``)."""
    from nightlake.detrends.mirror import DB_ENV, default_db

    path = default_db(db)
    if path is None:
        raise UsageError(f"no detrend database: give --db DB or set {DB_ENV}")
    if as_of is not None:
        from nightlake.detrends.history import parse_as_of, replay

        return replay(path, parse_as_of(as_of)).db
    from nightlake.detrends.detreg import read_db

    return read_db(path)


# -- output ---------------------------------------------------------------------------------


def _table(rows: list[dict], columns: Sequence[str], out) -> None:
    """``rows`` in the table format of every command, filenames never cut."""
    from nightlake.query.output import write_table  # only here: the short format starts fast

    cells = [["" if r.get(c) is None else str(r.get(c)) for c in columns] for r in rows]
    write_table(columns, [cells], out.write, cell_width=None)


def _answer(db, image: Image, choice: Choice | None, detrend_type: str, mode: str) -> dict:
    return {
        "image": image.name,
        "ccd": image.ccd,
        "filter": image.filter,
        "exptime": image.exptime,
        "time": iso_utc_us(image.time_us) if image.time_us is not None else None,
        "type": detrend_type,
        "mode": mode,
        "rule": None if choice is None else choice.rule,
        "scale": None if choice is None else choice.scale,
        "record": None if choice is None else record(db, choice.index).to_search(),
    }


def _print_answers(answers: list[dict], fmt: str, batch: bool, out, db=None) -> None:
    if fmt == "json":
        import json

        from nightlake.detrends.provenance import search_record

        # every answer carries where it came from, so a line cut out of a batch still does
        provenance = search_record(db, answers[0]["type"], answers[0]["mode"])
        answers = [dict(a, provenance=provenance) for a in answers]
        out.write(json.dumps(answers if batch else answers[0], indent=1) + "\n")
    elif fmt == "table":
        rows = [
            dict(
                a,
                filename=(a["record"] or {}).get("filename"),
                index=(a["record"] or {}).get("index"),
            )
            for a in answers
        ]
        _table(rows, ["image", "ccd", "filter", "time", "rule", "scale", "index", "filename"], out)
    elif batch:
        for a in answers:
            out.write(f"{a['image']}\t{(a['record'] or {}).get('filename', '')}\n")
    elif answers[0]["record"] is not None:
        out.write(answers[0]["record"]["filename"] + "\n")


def _exact_bytes(stream):
    """``stream`` writing filenames as the bytes the database holds: names are decoded with
    surrogateescape, so a name that is not UTF-8 goes out unchanged instead of failing."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None and str(getattr(stream, "encoding", "")).lower() in (
        "utf-8",
        "utf8",
    ):
        reconfigure(errors="surrogateescape")
    return stream


def run(argv: Sequence[str], prog: str = "detsearch", out=None, err=None) -> int:
    """Run detsearch with ``argv``; returns the exit status (raises NightlakeError on errors)."""
    out = out or _exact_bytes(sys.stdout)
    err = err or sys.stderr
    args = build_parser(prog).parse_args(elixir_argv(argv))
    db = open_db(args.db, args.as_of)
    time_us = time_option(args.time) if args.time else None

    if args.explain:
        from nightlake.detrends.explain import run_detsearch_explain

        return run_detsearch_explain(db, args, time_us, out)
    if not args.image:
        return _list(db, args, time_us, out)
    return _answer_images(db, args, time_us, out, err, prog)


_LIST_COLUMNS = ("index", "type", "ccd", "filter", "dark_exptime", "tstart", "tstop", "treg")


def _list(db, args, time_us: int | None, out) -> int:
    """No image: the records that match the options; 1 when there are none."""
    trange = tuple(time_option(v) for v in args.trange) if args.trange else None
    indices = list_records(
        db,
        detrend_type=args.type,
        ccd=args.ccd,
        filter=args.filter,
        exptime=args.exptime,
        time_us=time_us,
        trange=trange,
    )
    rows = [record(db, i).to_search() for i in indices]
    if args.format == "json":
        import json

        out.write(json.dumps(rows, indent=1) + "\n")
    elif args.format == "table":  # the cells detregister list shows (open-ended: never)
        _table([record(db, i).to_text() for i in indices], [*_LIST_COLUMNS, "filename"], out)
    else:
        show = args.show or "tstart"
        for r in rows:
            when = r[show] or "never"
            what = r["dark_exptime"] if r["type"] == "dark" else r["filter"]
            out.write(
                f"{when}\t{r['type']}\t{r['ccd']}\t{'' if what is None else what}\t"
                f"{r['filename']}\n"
            )
    return 0 if rows else 1


def _answer_images(db, args, time_us: int | None, out, err, prog: str) -> int:
    """The detrend of each ``--image``; misses are an error (one image) or reported on
    ``err`` (several) with status 1."""
    if args.type is None:
        raise UsageError("--type is required with --image (bias, dark, flat, fringe or mask)")
    from nightlake.detrends.images import read_image

    paths, elixir_ccd, elixir_layout = expand_images(args.image)
    if not paths:
        raise UsageError("no image given")
    ccd = args.ccd if args.ccd is not None else elixir_ccd
    layout = args.layout or elixir_layout
    images = [
        read_image(
            p, ccd=ccd, layout=layout, filter=args.filter, time_us=time_us, exptime=args.exptime
        )
        for p in paths
    ]
    for image in images:
        missing = _missing(image, args.type)
        if missing:
            raise InputError(image.name, missing)
    choices = search(db, images, args.type, args.mode)
    answers = [_answer(db, img, ch, args.type, args.mode) for img, ch in zip(images, choices)]
    batch = len(images) > 1
    _print_answers(answers, args.format, batch, out, db)
    misses = [img for img, ch in zip(images, choices) if ch is None]
    if misses and not batch:
        raise NightlakeError(f"no {describe_request(args.type, misses[0], args.mode)}")
    for image in misses:
        err.write(f"{prog}: {image.name}: no {describe_request(args.type, image, args.mode)}\n")
    return 1 if misses else 0


def _missing(image: Image, detrend_type: str) -> str | None:
    if image.ccd is None:
        return "no CCDNUM in the header; give --ccd N (or the CCD after the image name)"
    if detrend_type in FILTERED_TYPES and image.filter is None:
        return f"no FILTER in the header (a {detrend_type} depends on it); give --filter F"
    if detrend_type == "dark" and image.exptime is None:
        return "no EXPTIME in the header (a dark depends on it); give --exptime S"
    return None


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point of ``detsearch``: errors become one line and exit status."""
    prog = "detsearch"
    try:
        status = run(sys.argv[1:] if argv is None else argv, prog)
        sys.stdout.flush()
    except BrokenPipeError:
        # `detsearch … | head`: the reader has what it wanted; leave quietly (as nightlake.cli)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 0
    except NightlakeError as exc:
        if os.environ.get("NIGHTLAKE_DEBUG", "") not in ("", "0"):
            raise
        sys.stderr.write(f"{prog}: error: {one_line(exc) or 'error'}\n")  # as nightlake.cli
        status = exc.exit_code
    except OSError as exc:
        if os.environ.get("NIGHTLAKE_DEBUG", "") not in ("", "0"):
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        sys.stderr.write(f"{prog}: error: {where}{exc.strerror or exc}\n")
        status = 1
    raise SystemExit(status)
