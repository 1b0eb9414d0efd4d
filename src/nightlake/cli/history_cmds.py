"""``nightlake history`` (the journal's list of changes) and ``detregister adopt``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from nightlake.cli.detreg_cmds import _db, detregister
from nightlake.cli.options import DbArgument, DbLockOption, DbOption, TableOrJsonOption
from nightlake.cli.root import app
from nightlake.errors import UsageError


@app.command("history")
def history_cmd(
    db: Path | None = DbOption,
    fmt: str = TableOrJsonOption,
) -> None:
    """List the changes of a DetReg database from its journal: time, action, records, who,
    host, resulting SHA-256."""
    from nightlake.detrends.history import history

    if fmt not in ("table", "json"):
        raise UsageError(f"--format must be table or json, not {fmt!r}")
    changes = history(_db(db))
    if fmt == "json":
        typer.echo(json.dumps([c.as_dict() for c in changes], indent=1))
        return
    for c in changes:
        who = "@".join(x for x in (c.user, c.host) if x) or "-"
        sha = (c.sha256 or "-")[:12]
        typer.echo(
            f"{c.time}  {c.action:<9} {len(c.records):>5} record(s)  nrecord={c.nrecord}  "
            f"{who}  sha256={sha}"
            + (
                "  (not in the file: its writer is at it or stopped before replacing it)"
                if c.pending
                else ""
            )
        )
        for rec in c.records:
            index = f"#{rec['index']} " if "index" in rec else ""
            typer.echo(
                f"    {'-' if c.action == 'delete' else '+'} {index}{rec.get('type')} "
                f"ccd={rec.get('ccd')} filter={rec.get('filter_name')} {rec.get('filename')}"
            )


@detregister.command()
def adopt(
    db: Path | None = DbArgument,
    lock_timeout: float = DbLockOption,
) -> None:
    """Journal a snapshot of the database as it is (for one written by other tools), so that
    --as-of can replay from it; the file itself is not changed."""
    from nightlake.detrends.history import adopt as adopt_db

    entry = adopt_db(_db(db), lock_timeout=lock_timeout)
    typer.echo(f"adopted {_db(db)}: {entry['nrecord']} records as of {entry['time']}")


@app.command("verify")
def verify_cmd(
    result: Path = typer.Argument(..., help="A Parquet file written by nightlake resolve."),
    limit: int = typer.Option(20, "--limit", help="Differing rows to print (0: all)."),
) -> None:
    """Derive a resolution again from the database journal position and lake state it
    records; exit 1 listing the rows that differ, 2 when those inputs are gone."""
    from nightlake.detrends.provenance import read_provenance, verify

    diffs = verify(result)
    if not diffs:
        info = read_provenance(result)
        pos = info["db"]["journal"]
        typer.echo(
            f"{result}: verified: {info['type']} ({info['mode']} mode) follows from "
            f"{info['db']['path']} at journal entry {pos['entries']} and the lake "
            f"{info['lake']['path']} ({info['lake']['files']} partition files)"
        )
        return
    shown = diffs if limit <= 0 else diffs[:limit]
    for d in shown:
        image = " ".join(f"{k}={v}" for k, v in d.image.items() if v is not None)
        if d.recorded is None or d.derived is None:
            typer.echo(
                f"differs: {image}: {'only derived' if d.recorded is None else 'only recorded'}"
            )
            continue
        changed = ", ".join(
            f"{k} recorded {d.recorded[k]!r}, derived {d.derived[k]!r}"
            for k in d.recorded
            if d.recorded[k] != d.derived.get(k)
        )
        typer.echo(f"differs: {image}: {changed}")
    more = f" ({len(diffs) - len(shown)} more not shown)" if len(shown) < len(diffs) else ""
    typer.echo(f"{result}: {len(diffs)} row(s) differ from a fresh derivation{more}", err=True)
    raise typer.Exit(1)
