"""Fixtures of the web tests: the served lake and a real ``nightlake serve`` process on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from .lake_fixture import build_web_lake
from .live_server import live_server


@pytest.fixture(scope="session")
def web_lake(tmp_path_factory) -> Path:
    """The fixture collections with a detrend mirror (read-only for the tests that use it)."""
    return build_web_lake(tmp_path_factory.mktemp("web-lake"))


@pytest.fixture(scope="session")
def served(web_lake, tmp_path_factory) -> str:
    """The base URL of ``nightlake serve --lake web_lake`` on a free loopback port."""
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    with live_server(web_lake, log) as url:
        yield url
