"""The web app over the fixture lake (the eight committed collections, converted once)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"


@pytest.fixture(scope="session")
def web_lake(tmp_path_factory) -> Path:
    """The fixture collections as a lake; the tests only read it (one checks it is unchanged)."""
    from nightlake.ingest.convert import convert
    from nightlake.lake import Lake

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
