"""The access log (frameseek/server/accesslog.py): one line per request, as JSON objects or as
text, with the client, the token's fingerprint and never a token or a link's signature."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from frameseek.server.accesslog import redacted_query
from frameseek.server.auth import fingerprint
from tests.conftest import SAMPLES
from tests.server.conftest import Server, bearer, running_server

QUERY = (SAMPLES / "query.jpg").read_bytes()
TOKEN = "access-log-token-0123456789"
FIELDS = {"time", "client", "token", "method", "path", "query", "status", "bytes", "ms"}


def test_signatures_are_cut_out_of_the_query() -> None:
    assert redacted_query("top=3&sig=1800.abcdef&x=sig=1") == "top=3&sig=…&x=sig=1"
    assert redacted_query("") == ""


@pytest.fixture(scope="module")
def json_logged(sample_index: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("accesslog") / "server.log"
    with running_server(sample_index, log, "--access-log", "json", token=TOKEN) as server:
        yield server


def entries(server: Server) -> list[dict]:
    # The JSON lines, among the server's other messages (start-up, refusals) on stderr.
    return [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]


def test_json_access_log_has_one_object_per_request(json_logged: Server) -> None:
    server = json_logged
    with server.client() as client:
        answer = client.post("/api/search", params={"top": 1},
                             files={"image": ("query.jpg", QUERY, "image/jpeg")}).json()
    thumbnail = answer["results"][0]["thumbnail_url"]
    signature = thumbnail.partition("sig=")[2]
    with httpx.Client(base_url=server.url, timeout=60) as anonymous:
        assert anonymous.get(thumbnail).status_code == 200
        assert anonymous.get("/api/videos").status_code == 401
        assert anonymous.get("/api/stats", headers=bearer(TOKEN + "x")).status_code == 401
    time.sleep(0.5)  # the last line is written once its answer is sent

    logged = entries(server)
    assert logged and all(set(entry) == FIELDS for entry in logged)
    by_path = {(entry["method"], entry["path"]): entry for entry in logged}
    search = by_path[("POST", "/api/search")]
    assert (search["status"], search["query"], search["token"]) == (200, "top=1",
                                                                    fingerprint(TOKEN))
    assert search["client"] == "127.0.0.1" and search["ms"] > 0 and search["bytes"] > 0
    datetime.fromisoformat(search["time"])
    media = by_path[("GET", thumbnail.partition("?")[0])]
    assert (media["status"], media["query"], media["token"]) == (200, "sig=…", None)
    assert by_path[("GET", "/api/videos")]["status"] == 401
    assert by_path[("GET", "/api/stats")]["token"] is None  # a wrong token is no one's
    text = server.log_text()
    assert signature not in text and TOKEN not in text


def test_text_access_log_names_the_request_and_no_secret(server: Server) -> None:
    with server.client() as client:
        answer = client.post("/api/search", params={"top": 1},
                             files={"image": ("query.jpg", QUERY, "image/jpeg")}).json()
    thumbnail = answer["results"][0]["thumbnail_url"]
    assert httpx.get(server.url + thumbnail, timeout=60).status_code == 200
    time.sleep(0.5)
    text = server.log_text()
    assert server.token and fingerprint(server.token) in text
    assert f'127.0.0.1 token {fingerprint(server.token)} "POST /api/search?top=1" 200' in text
    assert f'127.0.0.1 "GET {thumbnail.partition("?")[0]}?sig=…" 200' in text
    assert server.token not in text and thumbnail.partition("sig=")[2] not in text
    assert "HTTP/1.1" not in text  # uvicorn's own access log, which shows queries, is off
