"""Many concurrent GETs of pages and CSV downloads against a served lake (loopback only).

Used by tests/web/test_load.py (every request answered, no error) and bench/serve_load.py
(latency percentiles). Bounded: a fixed number of requests, each with a time limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from .live_server import HOST

# Each request's limit; a request still unanswered by then counts as an error.
REQUEST_LIMIT_S = 120.0
CSV_QUERY = (
    "SELECT night, target, visit, detector, psfSigma, zeroPoint, skyBg FROM images "
    "WHERE night = $night ORDER BY visit, detector"
)


@dataclass(frozen=True)
class Answer:
    path: str
    status: int | None  # None: no answer (connection error or time limit)
    seconds: float
    sha256: str = ""  # of the body
    error: str = ""


def request_paths(nights: list[str]) -> list[str]:
    """The mix one round asks for: every page, a query, and a CSV download per night."""
    paths = ["/", "/detrends", "/sql?" + urlencode({"q": "SELECT count(*) FROM images"})]
    for night in nights:
        paths.append(f"/night/{night}")
        paths.append("/sql.csv?" + urlencode({"q": CSV_QUERY, "p.night": night}))
    return paths


async def _get(client, path: str) -> Answer:
    start = time.perf_counter()
    try:
        response = await client.get(path)
        body = await response.aread()
    except Exception as exc:  # any failure is a result here, reported by the caller
        error = f"{type(exc).__name__}: {exc}"
        return Answer(path, None, time.perf_counter() - start, error=error)
    seconds = time.perf_counter() - start
    return Answer(path, response.status_code, seconds, hashlib.sha256(body).hexdigest())


async def _all(base_url: str, paths: list[str]) -> list[Answer]:
    import httpx2

    limits = httpx2.Limits(max_connections=len(paths), max_keepalive_connections=0)
    async with httpx2.AsyncClient(
        base_url=base_url, limits=limits, timeout=REQUEST_LIMIT_S, trust_env=False
    ) as client:
        return await asyncio.gather(*(_get(client, p) for p in paths))


def hammer(base_url: str, nights: list[str], count: int = 200) -> list[Answer]:
    """``count`` GETs at once, cycling through :func:`request_paths`; one answer each."""
    if urlsplit(base_url).hostname != HOST:
        raise ValueError(f"load goes to {HOST} only, not {base_url}")
    mix = request_paths(nights)
    return asyncio.run(_all(base_url, [mix[i % len(mix)] for i in range(count)]))


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]
