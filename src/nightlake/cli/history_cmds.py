"""``nightlake history`` (the journal's list of changes) and ``detregister adopt``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from nightlake.cli.detreg_cmds import DB_ENV, DbOption, LockOption, _db, detregister
from nightlake.cli.root import app
from nightlake.errors import UsageError


@app.command("history")
def history_cmd(
    db: Path | None = DbOption,
    fmt: str = typer.Option("table", "--format", help="table or json."),
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
        )
        for rec in c.records:
            index = f"#{rec['index']} " if "index" in rec else ""
            typer.echo(
                f"    {'-' if c.action == 'delete' else '+'} {index}{rec.get('type')} "
                f"ccd={rec.get('ccd')} filter={rec.get('filter_name')} {rec.get('filename')}"
            )


@detregister.command()
def adopt(
    db: Path | None = typer.Argument(
        None, envvar=DB_ENV, show_default=False, help=f"The DetReg database (default: ${DB_ENV})."
    ),
    lock_timeout: float = LockOption,
) -> None:
    """Journal a snapshot of the database as it is (for one written by other tools), so that
    --as-of can replay from it; the file itself is not changed."""
    from nightlake.detrends.history import adopt as adopt_db

    entry = adopt_db(_db(db), lock_timeout=lock_timeout)
    typer.echo(f"adopted {_db(db)}: {entry['nrecord']} records as of {entry['time']}")
