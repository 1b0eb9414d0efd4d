"""``nightlake serve`` as a user runs it: a real process answering on loopback, and the
errors before it starts."""

from __future__ import annotations

import urllib.request

import pytest

from nightlake.web.app import server_url
from web.live_server import live_server


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


def test_serve_answers_on_loopback_until_stopped(web_lake, tmp_path):
    log = tmp_path / "serve.log"
    with live_server(web_lake, log) as url:
        with urllib.request.urlopen(f"{url}/night/20190402") as r:
            body = r.read().decode()
            headers = r.headers
        assert '<h1 id="night">20190402</h1>' in body
        assert "default-src 'self'" in headers["content-security-policy"]
    assert f" at {url}/ (Ctrl-C stops)" in log.read_text()


@pytest.mark.parametrize(
    "host, url",
    [
        ("127.0.0.1", "http://127.0.0.1:8000/"),
        ("localhost", "http://localhost:8000/"),
        ("0.0.0.0", "http://0.0.0.0:8000/"),
        ("::1", "http://[::1]:8000/"),
        ("[::1]", "http://[::1]:8000/"),
        ("::", "http://[::]:8000/"),
        ("fe80::1%eth0", "http://[fe80::1%25eth0]:8000/"),
    ],
)
def test_the_address_serve_prints_opens_in_a_browser(host, url):
    assert server_url(host, 8000) == url
