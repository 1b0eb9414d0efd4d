"""The ASGI app of ``nightlake serve``: routes, templates, security headers, error pages.

:func:`create_app` returns a Starlette app over one lake. It only reads: the lake through
:meth:`nightlake.Lake.sql` (the read-only path of ``nightlake sql``; the detrend mirror is
never synced), its ``serve.toml`` (:mod:`nightlake.web.settings`) and the package's own
templates and static files. Errors of the library become pages with one line and a status:
unknown night or URL 404, bad SQL 400, a refused write 403, a method other than GET 405.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from nightlake.errors import NightlakeError, QueryError, ReadOnlyError, UsageError, one_line
from nightlake.query.lake import Lake
from nightlake.query.output import cell_text
from nightlake.web import pages
from nightlake.web.queries import NotFound
from nightlake.web.settings import ServeSettings, SettingsFile

if TYPE_CHECKING:
    from nightlake.detrends.mirror import Freshness

HERE = Path(__file__).resolve().parent

#: Scripts, styles, images and data only from the app itself; no inline script or style
#: (page data travels as JSON in <script type="application/json">), no frames, no plugins.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


ERROR_HEADINGS = {
    400: "Bad request",
    403: "Refused",
    404: "Not found",
    405: "Method not allowed",
    500: "Something went wrong",
}


class Site:
    """What every page needs: the lake, its settings, the templates."""

    def __init__(self, lake: Lake, settings: ServeSettings | None) -> None:
        import jinja2

        self.lake = lake
        self._fixed = settings
        self._file = SettingsFile(lake.path)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self._memo: dict[str, tuple[Any, Any]] = {}
        self._memo_lock = threading.Lock()
        self._computing: dict[str, threading.Lock] = {}
        self.env.filters["cell"] = cell_text

    def settings(self) -> ServeSettings:
        """The settings given to :func:`create_app`, else the lake's serve.toml as it is now."""
        return self._fixed if self._fixed is not None else self._file.current()

    def lake_stamp(self, request: Request) -> tuple:
        """What page data depends on: the lake's manifest and mirror (as
        :meth:`Lake.disk_state` sees them) and every image file's size and mtime. Taken once
        per request (listing and stating every file is the dear part of a cached page)."""
        from nightlake.files import file_stamp

        stamp = getattr(request.state, "lake_stamp", None)
        if stamp is None:
            files = tuple((str(path), file_stamp(path)) for path in self.lake.image_files())
            stamp = request.state.lake_stamp = (self.lake.disk_state(), files)
        return stamp

    def cached(self, request: Request, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, reused until the lake changes: the pages' data depends on the lake
        alone (not on the query string). One request computes while the others asking at the
        same time wait for its answer."""
        return self._memoized(name, self.lake_stamp(request), compute)

    def freshness(self) -> Freshness:
        """The detrend mirror's :func:`~nightlake.detrends.mirror.freshness`, reused while
        the mirror and its database stay as they were (:meth:`Lake.disk_state` stamps both)."""
        from nightlake.detrends.mirror import freshness

        return self._memoized("freshness", self.lake.disk_state(), lambda: freshness(self.lake))

    def _memoized(self, name: str, stamp: Any, compute: Callable[[], Any]) -> Any:
        with self._memo_lock:
            lock = self._computing.setdefault(name, threading.Lock())
        with lock:
            held = self._memo.get(name)
            if held is not None and held[0] == stamp:
                return held[1]
            value = compute()
            self._memo[name] = (stamp, value)
            return value

    def render(self, request: Request, template: str, *, status: int = 200, **context: Any):
        state = self.freshness()
        banner = state.message if state.state not in ("fresh", "no-mirror") else None
        html = self.env.get_template(template).render(
            request=request, lake=self.lake, stale=banner, **context
        )
        return HTMLResponse(html, status_code=status)


class SecurityHeaders:
    """ASGI middleware: the CSP and friends on every response, static files and errors too."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _error_page(request: Request, status: int, message: str):
    site: Site = request.app.state.site
    return site.render(
        request,
        "error.html",
        status=status,
        page="error",
        error=message,
        heading=ERROR_HEADINGS.get(status, "Error"),
    )


async def _http_error(request: Request, exc: HTTPException):
    message = {
        404: f"no page at {request.url.path}",
        405: f"{request.method} is not allowed here (GET only)",
    }
    response = _error_page(request, exc.status_code, message.get(exc.status_code, str(exc.detail)))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def _library_error(request: Request, exc: Exception):
    """A library error as a page with one line: 404 not found, 403 refused, 400 bad input."""
    if isinstance(exc, NotFound):
        status = 404
    elif isinstance(exc, ReadOnlyError):
        status = 403
    elif isinstance(exc, (QueryError, UsageError)):
        status = 400
    else:
        status = 500
    return _error_page(request, status, one_line(exc))


def _unexpected_error(request: Request, exc: Exception):
    """A bug of ours: a page with one line, never a traceback (the log has it). Starlette
    answers it outside every middleware, so it carries the security headers itself."""
    import logging

    logging.getLogger("nightlake.web").error(
        "%s %s failed", request.method, request.url.path, exc_info=exc
    )
    page = _error_page(request, 500, f"internal error: {type(exc).__name__}: {one_line(exc)}")
    page.raw_headers.extend(SECURITY_HEADERS)
    return page


#: The names a browser uses for a server on the loopback interface.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def allowed_hosts(host: str) -> list[str]:
    """The Host headers to accept for a server listening on ``host``: on loopback only the
    loopback names (a web page elsewhere cannot reach the lake through DNS rebinding);
    listening on other interfaces, any."""
    return list(dict.fromkeys([*LOOPBACK_HOSTS, host])) if _is_loopback(host) else ["*"]


def server_url(host: str, port: int) -> str:
    """The address to open for a server listening on ``host``:``port``: an IPv6 address in
    brackets, its zone's ``%`` as ``%25`` (RFC 6874); for every interface (``0.0.0.0``,
    ``::``), the loopback address, which a browser opens where the wildcard may not."""
    address, bare = _ip_address(host), bind_address(host)
    if address is not None and address.is_unspecified:
        bare = "::1" if address.version == 6 else "127.0.0.1"
    if address is not None and address.version == 6:
        return f"http://[{bare.replace('%', '%25')}]:{port}/"
    return f"http://{bare}:{port}/"


def listen(host: str, port: int) -> list[socket.socket]:
    """Sockets listening on ``host``:``port``, one for each address ``host`` names (an IPv6
    address with or without brackets; ``localhost`` is 127.0.0.1 and ::1 where both are),
    for the server to take: a port in use or an address this machine does not have is one
    line here, before anything says the lake is served. Port 0: one the system picks."""
    from nightlake.errors import UsageError

    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be 0 to 65535, not {port}")
    address = bind_address(host)
    try:
        found = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise NightlakeError(f"cannot listen on {host} port {port}: {exc.strerror}") from None
    sockets: list[socket.socket] = []
    missing: OSError | None = None
    try:
        for family, where in dict.fromkeys((f[0], f[4]) for f in found):
            if sockets:  # the port the first socket got, where the system picked one
                where = (where[0], sockets[0].getsockname()[1], *where[2:])
            try:
                sockets.append(socket.create_server(where, family=family))
            except OSError as exc:
                if exc.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    raise  # in use, not allowed: no half of a name served
                missing = missing or exc  # e.g. ::1 where IPv6 is off: the others serve
    except OSError as exc:
        for sock in sockets:
            sock.close()
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise NightlakeError(f"cannot listen on {host} port {port}: {why}") from None
    if not sockets:
        assert missing is not None
        raise NightlakeError(f"cannot listen on {host} port {port}: {os.strerror(missing.errno)}")
    return sockets


def listens_everywhere(host: str) -> bool:
    """Whether ``host`` is the address of every interface (``0.0.0.0``, ``::``)."""
    address = _ip_address(host)
    return address is not None and address.is_unspecified


def _ip_address(host: str):
    """``host`` as an IP address (IPv6 with or without brackets, a zone kept), or None for
    a name."""
    import ipaddress

    try:
        return ipaddress.ip_address(bind_address(host))
    except ValueError:
        return None


def bind_address(host: str) -> str:
    """``--host`` as a socket takes it: an IPv6 address without the brackets of a URL."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _is_loopback(host: str) -> bool:
    """``localhost`` or an address of the loopback network (127.0.0.0/8, ::1, and the IPv4
    ones written as IPv6)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    address = _ip_address(host)
    if address is None:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def create_app(
    lake: Lake | str | os.PathLike[str],
    settings: ServeSettings | None = None,
    *,
    hosts: Sequence[str] = ("*",),
):
    """The ASGI app serving ``lake``; ``settings`` None reads the lake's serve.toml (again
    whenever it changes); ``hosts``: the Host headers it answers (:func:`allowed_hosts`)."""
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    # confined: the SQL page reads the lake's files and no others
    the_lake = Lake(lake.path if isinstance(lake, Lake) else lake, confined=True)
    routes = [
        Route("/", pages.nights_page, methods=["GET"]),
        Route("/night/{night}", pages.night_page, methods=["GET"]),
        Route("/detrends", pages.detrends_page, methods=["GET"]),
        Route("/sql", pages.sql_page, methods=["GET"]),
        Route("/sql.{fmt}", pages.sql_download, methods=["GET"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: _http_error,
            NightlakeError: _library_error,
            Exception: _unexpected_error,
        },
    )
    app.state.site = Site(the_lake, settings)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))
    app.add_middleware(SecurityHeaders)
    return app
