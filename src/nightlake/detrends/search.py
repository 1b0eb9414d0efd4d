"""``detsearch``: which detrend applies to this image, from the shell.

The console script ``detsearch`` and ``nightlake detsearch`` both run :func:`run`. It parses
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
from datetime import UTC
from pathlib import Path

from nightlake.detrends.rules import (
    DETREND_TYPES,
    FILTERED_TYPES,
    MODES,
    OPEN_ENDED,
    Choice,
    Image,
    describe_request,
    iso_utc,
    iso_utc_us,
)
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


def elixir_argv(argv: Sequence[str]) -> list[str]:
    """Accept Elixir's single-dash options (``-image``, ``-type`` …) as their ``--`` forms."""
    out = []
    for arg in argv:
        if (
            arg.startswith("-")
            and not arg.startswith("--")
            and arg[1:].split("=")[0] in _LONG_OPTIONS
        ):
            arg = "-" + arg
        out.append(arg)
    return out


def parse_time_us(text: str) -> int:
    """ISO-8601 (UTC unless it says otherwise) or Unix seconds → Unix microseconds."""
    from nightlake.detrends.images import iso_to_unix_us

    text = text.strip()
    try:
        return round(float(text) * 1_000_000)
    except ValueError:
        pass
    try:
        return iso_to_unix_us(text)
    except ValueError:
        try:
            from datetime import datetime

            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
            return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
        except ValueError:
            raise UsageError(
                f"not a time: {text!r} (expected ISO-8601 UTC like "
                "2019-04-02T05:13:00 or Unix seconds)"
            ) from None


def expand_images(tokens: Iterable[str]) -> tuple[list[str], int | None, str | None]:
    """Image paths (``@LIST`` expanded), plus an Elixir-style CCD number and layout."""
    images: list[str] = []
    ccd = layout = None
    for token in tokens:
        if token.startswith("@"):
            listing = token[1:]
            try:
                lines = Path(listing).read_text().splitlines()
            except OSError as exc:
                raise InputError(listing, exc.strerror or str(exc)) from exc
            images += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        elif images and token.isdigit() and not os.path.exists(token):
            ccd = int(token)
        elif images and token in ("split", "mef") and not os.path.exists(token):
            layout = token
        else:
            images.append(token)
    return images, ccd, layout


def record_dict(db, index: int) -> dict:
    """One record as plain values (times ISO-8601 UTC; open-ended tstop → None)."""
    from nightlake.detrends.rules import TYPE_CODE

    rec = db.raw_records[index]
    names = {v: k for k, v in TYPE_CODE.items()}
    kind = names.get(int(rec["type"]), str(int(rec["type"])))
    code = int(rec["filter"])
    tstop = int(rec["tstop"])
    return {
        "index": int(index),
        "type": kind,
        "ccd": int(rec["ccd"]),
        "filter": None if kind == "dark" else db.filters.get(code),
        "filter_code": code,
        "dark_exptime": code if kind == "dark" else None,
        "tstart": iso_utc(int(rec["tstart"])),
        "tstop": None if tstop == OPEN_ENDED else iso_utc(tstop),
        "treg": iso_utc(int(rec["treg"])),
        "tstart_s": int(rec["tstart"]),
        "tstop_s": tstop,
        "treg_s": int(rec["treg"]),
        "sigma": float(rec["sigma"]),
        "clipsigma": float(rec["clipsigma"]),
        "filename": bytes(rec["filename"]).split(b"\0", 1)[0].decode("utf-8", "surrogateescape"),
        "flag1": int(rec["flag1"]),
        "flag2": int(rec["flag2"]),
    }


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


def search(
    db, images: Sequence[Image], detrend_type: str, mode: str = "exact"
) -> list[Choice | None]:
    """The choice for each image (one pass over the database's records, read once)."""
    from nightlake.detrends.rules import Resolver

    resolver = Resolver(db.raw_records, db.filters)
    return [resolver.choose(detrend_type, image, mode) for image in images]


def list_records(
    db,
    *,
    detrend_type: str | None = None,
    ccd: int | None = None,
    filter: str | None = None,
    exptime: float | None = None,
    time_us: int | None = None,
    trange: tuple[int, int] | None = None,
) -> list[int]:
    """Indices of the records matching every given condition, in file order.

    ``filter`` matches a record's filter name or its first word (the band); for darks it is
    compared with the dark exposure time. ``time_us``: the validity covers it; ``trange``
    (µs, half-open): the validity overlaps it.
    """
    import numpy as np

    from nightlake.detrends.images import band_of
    from nightlake.detrends.rules import TYPE_CODE

    rec = db.raw_records
    mask = np.ones(len(rec), dtype=bool)
    if detrend_type is not None:
        mask &= rec["type"] == TYPE_CODE[detrend_type]
    if ccd is not None:
        mask &= rec["ccd"] == ccd
    if filter is not None:
        codes = [c for c, name in db.filters.items() if filter in (name, band_of(name))]
        is_dark = rec["type"] == TYPE_CODE["dark"]
        named = np.isin(rec["filter"], codes) & ~is_dark
        try:
            named |= is_dark & (rec["filter"] == float(filter))
        except ValueError:
            pass
        mask &= named
    if exptime is not None:
        mask &= (rec["type"] == TYPE_CODE["dark"]) & (rec["filter"] == exptime)
    tstart = rec["tstart"].astype(np.uint64)
    tstop = rec["tstop"].astype(np.uint64)
    if time_us is not None:
        t = np.uint64(max(time_us // 1_000_000, 0))
        mask &= (tstart <= t) & (t < tstop)
    if trange is not None:
        lo, hi = (max(v, 0) for v in trange)
        # [tstart, tstop) overlaps [lo, hi) µs: tstart*1e6 < hi and lo < tstop*1e6
        mask &= (tstart < np.uint64(-(-hi // 1_000_000))) & (np.uint64(lo // 1_000_000) < tstop)
    return [int(i) for i in np.flatnonzero(mask)]


# -- output ---------------------------------------------------------------------------------


def _table(rows: list[dict], columns: Sequence[str]) -> str:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


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
        "record": None if choice is None else record_dict(db, choice.index),
    }


def _print_answers(answers: list[dict], fmt: str, batch: bool, out) -> None:
    if fmt == "json":
        import json

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
        out.write(
            _table(rows, ["image", "ccd", "filter", "time", "rule", "scale", "index", "filename"])
            + "\n"
        )
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
    time_us = parse_time_us(args.time) if args.time else None

    if args.explain:
        from nightlake.detrends.explain import run_detsearch_explain

        return run_detsearch_explain(db, args, time_us, out)
    if not args.image:
        trange = tuple(parse_time_us(v) for v in args.trange) if args.trange else None
        indices = list_records(
            db,
            detrend_type=args.type,
            ccd=args.ccd,
            filter=args.filter,
            exptime=args.exptime,
            time_us=time_us,
            trange=trange,
        )
        rows = [record_dict(db, i) for i in indices]
        if args.format == "json":
            import json

            out.write(json.dumps(rows, indent=1) + "\n")
        elif args.format == "table":
            out.write(
                _table(
                    rows,
                    [
                        "index",
                        "type",
                        "ccd",
                        "filter",
                        "dark_exptime",
                        "tstart",
                        "tstop",
                        "treg",
                        "filename",
                    ],
                )
                + "\n"
            )
        else:
            show = args.show or "tstart"
            for r in rows:
                when = r[show] or "open-ended"
                what = r["dark_exptime"] if r["type"] == "dark" else r["filter"]
                out.write(
                    f"{when}\t{r['type']}\t{r['ccd']}\t{'' if what is None else what}\t"
                    f"{r['filename']}\n"
                )
        return 0 if rows else 1

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
    _print_answers(answers, args.format, batch, out)
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
