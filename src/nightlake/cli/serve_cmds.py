"""``nightlake serve``: the nightly QA web app over a lake (:mod:`nightlake.web`).

Parsing and starting the server only; starlette, jinja2 and uvicorn load when the command
runs, so ``nightlake --help`` and the other commands never import them.
"""

from __future__ import annotations

from pathlib import Path

import typer

from nightlake.cli.options import LakeOption
from nightlake.cli.root import app


@app.command()
def serve(
    lake: Path | None = LakeOption,
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."
    ),
    port: int = typer.Option(8000, "--port", help="TCP port to listen on."),
) -> None:
    """Serve the lake's nights, detrends and a SQL page in a browser (read-only)."""
    from nightlake.errors import LakeError, UsageError
    from nightlake.query.lake import Lake
    from nightlake.query.stream import check_confinable, confined_places, writable_by_others

    the_lake = Lake(lake)
    if not the_lake.path.is_dir():
        raise LakeError(f"{the_lake.path}: no lake here")
    try:
        import uvicorn

        from nightlake.web.app import (
            allowed_hosts,
            create_app,
            listen,
            listens_everywhere,
            server_url,
        )
        from nightlake.web.settings import load_settings
    except ImportError as exc:
        raise UsageError(
            f"nightlake serve needs {exc.name}: pip install 'nightlake[serve]'"
        ) from None
    load_settings(the_lake.path)  # a broken serve.toml stops here, with its line
    check_confinable(confined_places(the_lake))  # as every page's connection would
    others = writable_by_others(the_lake)
    if others:
        more = f" (and {len(others) - 1} more)" if len(others) > 1 else ""
        typer.echo(
            f"nightlake: warning: {others[0]}{more} may be written by other users than you: "
            "a link or a rename there while this serves could lead the page's queries out "
            "of the lake",
            err=True,
        )
    app = create_app(the_lake, hosts=allowed_hosts(host))
    sockets = listen(host, port)  # a port in use stops here, before "serving" is said
    port = sockets[0].getsockname()[1]  # (--port 0: the one the system picked)
    everywhere = f"listening on {host}; " if listens_everywhere(host) else ""
    url = server_url(host, port)
    typer.echo(f"serving {the_lake.path.resolve()} at {url} ({everywhere}Ctrl-C stops)", err=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=sockets)
