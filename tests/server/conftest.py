"""A real `frameseek serve` process on a free loopback port, a raw HTTP helper for requests
that clients would normalise (`..` segments, odd encodings), and a reverse proxy that serves it
under a path prefix."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT

STARTUP_TIMEOUT_S = 300  # loads the VGG16 weights and runs one forward before it listens
# The session server's limits, low so that the tests exceeding them stay small.
MAX_UPLOAD_MB = 2
MAX_PIXELS = 4_000_000
# The session server needs this token, as a server a team exposes would.
TOKEN = "session-token-0123456789abcdef"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen
    log: Path
    token: str | None = None  # the one its clients send, if it needs one

    def client(self, token: str | None = None) -> httpx.Client:
        """A client sending `token`, else the server's own."""
        token = token or self.token
        return httpx.Client(base_url=self.url, timeout=120,
                            headers=bearer(token) if token else None)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def assert_alive(self) -> None:
        """Still running and still answering: a bad request must not have hurt it."""
        assert self.process.poll() is None, self.log_text()
        assert httpx.get(f"{self.url}/healthz", timeout=30).json()["status"] == "ok"

    def raw_get(self, target: str) -> tuple[int, bytes]:
        """GET `target` exactly as written (no normalisation, no re-encoding): status and body."""
        auth = f"Authorization: Bearer {self.token}\r\n" if self.token else ""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as conn:
            conn.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
                         "Connection: close\r\n\r\n".encode("latin-1"))
            response = b""
            while chunk := conn.recv(65536):
                response += chunk
        head, _, body = response.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_server(index: Path, log: Path, *options: str,
                   token: str | None = None) -> Iterator[Server]:
    """`frameseek serve --index INDEX --port PORT` as a subprocess, until the block ends; with
    `token`, FRAMESEEK_TOKEN holds it (and `Server.client()` sends it)."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "FRAMESEEK_TOKEN"}
    if token:
        env["FRAMESEEK_TOKEN"] = token
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "frameseek.cli", "serve", "--index", str(index),
             "--port", str(port), *options],
            cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, env=env,
        )
    server = Server(f"http://127.0.0.1:{port}", port, process, log, token.split(",")[0]
                    if token else None)
    try:
        _wait_until_ready(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"frameseek serve exited with {server.process.returncode}:\n"
                        f"{server.log_text()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"frameseek serve did not answer within {STARTUP_TIMEOUT_S} s:\n"
                f"{server.log_text()}")


@pytest.fixture(scope="session")
def server(sample_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server over the sample index for all the tests that do not change the index. It needs
    a token; its rate limit is off and it admits more searches at once than any test sends
    together (test_limits.py and test_batching.py have servers of their own for those)."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    with running_server(sample_index, log, "--max-upload-mb", str(MAX_UPLOAD_MB),
                        "--max-pixels", str(MAX_PIXELS), "--rate-limit", "0",
                        "--max-searches", "16", token=TOKEN) as running:
        yield running


# Headers that concern one connection, not the request: a proxy does not pass them on.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "host", "content-length"}


@contextmanager
def reverse_proxy(upstream_port: int, prefix: str) -> Iterator[str]:
    """A reverse proxy on a free loopback port, as nginx's `location PREFIX/ { proxy_pass
    http://127.0.0.1:PORT/; }` is: PREFIX/x goes upstream as /x, with X-Forwarded-For; other
    paths are 404. Yields its base URL."""

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            if not self.path.startswith(prefix + "/"):
                self.send_error(404)
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {name: value for name, value in self.headers.items()
                       if name.lower() not in HOP_BY_HOP}
            headers["X-Forwarded-For"] = self.client_address[0]
            upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=120)
            try:
                upstream.request(self.command, self.path[len(prefix):], body, headers)
                response = upstream.getresponse()
                content = response.read()
            finally:
                upstream.close()
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", response.getheader("Content-Length")
                             or str(len(content)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(content)

        do_GET = do_POST = do_HEAD = _forward

        def log_message(self, format: str, *args: object) -> None:
            pass  # the server behind logs each request

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{proxy.server_address[1]}"
    finally:
        proxy.shutdown()
        proxy.server_close()


@dataclass
class Proxied:
    server: Server  # the server itself, started with --root-path PREFIX
    origin: str  # the proxy's scheme, host and port
    prefix: str

    @property
    def url(self) -> str:
        """Where users reach the server: the proxy's URL of it."""
        return self.origin + self.prefix


PREFIX = "/media/frameseek"


@pytest.fixture(scope="session")
def proxied(sample_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    """A server that needs a token, behind a reverse proxy that serves it under PREFIX."""
    log = tmp_path_factory.mktemp("proxied") / "server.log"
    with (running_server(sample_index, log, "--root-path", PREFIX, "--rate-limit", "0",
                         token=TOKEN) as server,
          reverse_proxy(server.port, PREFIX) as origin):
        yield Proxied(server, origin, PREFIX)
