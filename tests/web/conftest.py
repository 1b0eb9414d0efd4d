"""The web app over the fixture lake (the eight committed collections, converted once)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from .lake_fixture import build_web_lake
from .live_server import live_server

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"


@pytest.fixture(scope="session")
def web_lake(tmp_path_factory) -> Path:
    """The fixture collections as a lake; the tests only read it (one checks it is unchanged)."""
    from nightlake import Lake
    from nightlake.ingest.convert import convert

    lake = tmp_path_factory.mktemp("web") / "lake"
    report = convert(Lake(lake), [str(FIXTURES / "collections")])
    assert not report.failed, report.failed
    return lake


@pytest.fixture(scope="session")
def client(web_lake):
    """An HTTP client of the app over ``web_lake`` with the default settings."""
    from starlette.testclient import TestClient

    from nightlake.web.app import create_app

    with TestClient(create_app(web_lake)) as test_client:
        yield test_client


@pytest.fixture
def lake_copy(web_lake, tmp_path) -> Path:
    """A copy of the fixture lake a test may change (settings, a mirror)."""
    target = tmp_path / "lake"
    shutil.copytree(web_lake, target)
    return target


@pytest.fixture(scope="session")
def served_lake(tmp_path_factory) -> Path:
    """The fixture collections with a detrend mirror made for the pages (see lake_fixture.py);
    read-only for the tests that use it."""
    return build_web_lake(tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="session")
def served(served_lake, tmp_path_factory) -> str:
    """The base URL of a real ``nightlake serve --lake served_lake`` on a free loopback port."""
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    with live_server(served_lake, log) as url:
        yield url


@pytest.fixture
def busy_port():
    """A loopback port another socket holds: ``nightlake serve`` on it stops with one line
    once it tries to listen, so a test of what it says before that cannot hang."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        yield str(taken.getsockname()[1])
