"""``nightlake serve`` as a real process on a free loopback port (browser and load tests, bench).

No pytest here: bench/serve_load.py and docs/make_screenshots.py start the same server.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
# How long a server may take to start listening before we give up on it (a bound on waiting,
# not a speed check: a healthy start takes about a second).
START_LIMIT_S = 60.0


def free_port() -> int:
    """A loopback port nobody listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((HOST, port)) == 0


def _wait_listening(proc: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + START_LIMIT_S
    while not _listening(port):
        if proc.poll() is not None:
            raise RuntimeError(f"nightlake serve exited with {proc.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nightlake serve not listening on {port}:\n{log.read_text()}")
        time.sleep(0.05)


@contextmanager
def live_server(lake: Path, log: Path, *extra: str) -> Iterator[str]:
    """Run ``nightlake serve --lake LAKE`` on 127.0.0.1 until the block ends; yields its URL.

    The server's stdout and stderr go to ``log`` (shown when it fails to start).
    """
    port = free_port()
    argv = [BIN / "nightlake", "serve", "--lake", lake, "--host", HOST, "--port", port, *extra]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(a) for a in argv], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        _wait_listening(proc, port, log)
        yield f"http://{HOST}:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
