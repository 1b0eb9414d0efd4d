"""Shared fixtures: the committed survey fixtures, a CLI runner, a local Dask cluster."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the same examples every time (a red CI must be reproducible); elsewhere hypothesis
# draws new ones on every run. HYPOTHESIS_PROFILE=ci repeats CI's run locally.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "data" / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    """nightlake's own cache (the macro catalog) in a temp directory, for the CLI processes
    the tests start too: tests write nothing into the home directory."""
    from nightlake.sql import CACHE_ENV

    saved = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("nightlake-cache"))
    yield
    if saved is None:
        del os.environ[CACHE_ENV]
    else:
        os.environ[CACHE_ENV] = saved


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def cli():
    """Run ``nightlake ARGS…`` in-process; returns typer's Result (stdout, stderr, exit_code)."""
    from typer.testing import CliRunner

    from nightlake.cli.app import app

    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        return runner.invoke(app, [str(a) for a in args], input=input)

    return run


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def dask_client(request):
    """A Dask client of a local cluster of 2 worker processes, one per test module."""
    import sys

    import cloudpickle

    distributed = pytest.importorskip("distributed")
    # the workers cannot import the test modules: their functions travel by value
    cloudpickle.register_pickle_by_value(sys.modules[request.module.__name__])
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with distributed.Client(cluster) as client:
        yield client
    cluster.close()
