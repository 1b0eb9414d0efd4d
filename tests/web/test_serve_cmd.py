"""``nightlake serve`` as a user runs it: a real process answering on loopback, and the
errors before it starts."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from nightlake.web.app import bind_address, listens_everywhere, server_url
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
        ("0.0.0.0", "http://127.0.0.1:8000/"),
        ("::1", "http://[::1]:8000/"),
        ("[::1]", "http://[::1]:8000/"),
        ("::", "http://[::1]:8000/"),
        ("0:0:0:0:0:0:0:0", "http://[::1]:8000/"),  # every interface, however written
        ("fe80::1%eth0", "http://[fe80::1%25eth0]:8000/"),
    ],
)
def test_the_address_serve_prints_opens_in_a_browser(host, url):
    assert server_url(host, 8000) == url


def test_a_bracketed_or_wildcard_host_binds_as_a_socket_takes_it():
    assert bind_address("[::1]") == "::1" and bind_address("::1") == "::1"
    assert bind_address("127.0.0.1") == "127.0.0.1"
    assert listens_everywhere("0.0.0.0") and listens_everywhere("[::]")
    assert listens_everywhere("::0") and not listens_everywhere("localhost")
    assert not listens_everywhere("127.0.0.1")


def test_serve_on_a_port_in_use_is_one_line_before_any_serving_line(cli, web_lake, tmp_path):
    """The port is taken before "serving … at URL" is printed: a port in use stops there
    with one line (it printed the URL, then uvicorn's own error)."""
    with live_server(web_lake, tmp_path / "first.log") as url:
        port = url.rsplit(":", 1)[1]
        done = cli("serve", "--lake", web_lake, "--host", "127.0.0.1", "--port", port)
    assert done.exit_code == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.endswith(f"error: cannot listen on 127.0.0.1 port {port}: Address already in use")


def test_serve_refuses_a_lake_it_cannot_confine_before_listening(cli, tmp_path, repo, busy_port):
    """A lake under a path with '[', '*' or '?' cannot be confined (see
    nightlake.query.stream.check_confinable): one line, before any port is taken."""
    from nightlake import Lake
    from nightlake.ingest.convert import convert

    lake = Lake(tmp_path / "runs[2]" / "lake")
    convert(lake, sorted((repo / "data" / "fixtures" / "collections").glob("*.collection"))[:1])
    done = cli("serve", "--lake", lake.path, "--port", busy_port)  # were it reached, listen fails
    assert done.exit_code == 1
    (line,) = done.stderr.strip().splitlines()
    assert "cannot confine queries to a directory whose path holds '[', '*' or '?'" in line


def test_serve_on_port_0_prints_the_port_it_got(web_lake):
    """--port 0: the system picks the port, and the line says which one."""
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("nightlake")), "serve", "--lake", str(web_lake)]
        + ["--port", "0"],
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stderr.readline()  # said once the socket listens
        url = line.split(" at ", 1)[1].split(" ", 1)[0]
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/"), line
        with urllib.request.urlopen(url, timeout=120) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=120)


def test_serve_refuses_a_port_out_of_range(cli, web_lake):
    done = cli("serve", "--lake", web_lake, "--port", "-1")
    assert done.exit_code == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.endswith("error: --port must be 0 to 65535, not -1")
    from nightlake.errors import UsageError
    from nightlake.web.app import listen

    with pytest.raises(UsageError, match="--port must be 0 to 65535, not 70000"):
        listen("127.0.0.1", 70000)  # (the system would take it modulo 65536)


def test_a_name_half_in_use_is_not_half_served(monkeypatch):
    """A name for two addresses (localhost as 127.0.0.1 and ::1) whose port another server
    holds on one of them: refused, not served on the other (a browser trying that one
    first would reach the other server)."""
    from nightlake.errors import NightlakeError
    from nightlake.web.app import listen

    try:
        taken = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    port = taken.getsockname()[1]
    both = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
    ]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: both)  # the name, as resolved
    with taken, pytest.raises(NightlakeError, match="Address already in use"):
        listen("localhost", port)
    with socket.create_server(("127.0.0.1", port)):  # the half bound was closed again
        pass


def test_a_name_for_two_addresses_listens_on_one_port_picked_once(monkeypatch):
    """--port 0 with localhost as 127.0.0.1 and ::1: the second socket takes the port the
    system gave the first, so the one URL printed reaches both (the IPv6 scope id kept)."""
    from nightlake.web.app import listen

    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    both = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0)),
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 0, 0, 0)),
    ]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: both)  # the name, as resolved
    sockets = listen("localhost", 0)
    try:
        if len(sockets) < 2:
            pytest.skip("::1 cannot be bound here (the other address serves alone)")
        ports = {sock.getsockname()[1] for sock in sockets}
        assert len(ports) == 1 and 0 not in ports
    finally:
        for sock in sockets:
            sock.close()
