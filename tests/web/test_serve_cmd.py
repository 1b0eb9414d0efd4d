"""``nightlake serve`` as a user runs it: a real process answering on loopback, and the
errors before it starts."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request


def test_serve_refuses_a_directory_that_is_not_a_lake(cli, tmp_path):
    done = cli("serve", "--lake", tmp_path / "nowhere")
    assert done.exit_code == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.endswith(f"error: {tmp_path / 'nowhere'}: no lake here")


def test_serve_refuses_a_broken_settings_file_before_listening(cli, lake_copy):
    (lake_copy / "serve.toml").write_text("format_version = 1\n[limits]\nrow_cap = -1\n")
    done = cli("serve", "--lake", lake_copy)
    assert done.exit_code == 1
    (line,) = done.stderr.strip().splitlines()
    assert "serve.toml: limits.row_cap = -1" in line


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_on_loopback_until_stopped(web_lake):
    port = _free_port()
    command = [sys.executable, "-m", "nightlake.cli", "serve", "--lake", str(web_lake)]
    proc = subprocess.Popen([*command, "--port", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        body = None
        for _ in range(600):  # until it listens (or dies); no time is asserted
            if proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/night/20190402") as r:
                    body = r.read().decode()
                    headers = r.headers
                break
            except OSError:
                time.sleep(0.1)
        assert body is not None, proc.stderr.read() if proc.poll() is not None else "no answer"
        assert '<h1 id="night">20190402</h1>' in body
        assert "default-src 'self'" in headers["content-security-policy"]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert "serving" in proc.stderr.read()
