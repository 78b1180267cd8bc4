"""Access tokens and signed media links (frameseek/server/auth.py): the pieces on their own, then
a real server that needs a token: every protected route refuses without one and answers with
one, the answer's media links open their own file and nothing else until they expire, a token
removed from the token file (or after SIGHUP) is refused from then on, and no token is logged."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from frameseek.server.auth import (
    MediaSigner,
    TokenError,
    Tokens,
    fingerprint,
    parse_token_list,
    read_token_file,
)
from tests.conftest import SAMPLES
from tests.server.conftest import Server, bearer, running_server

QUERY = (SAMPLES / "query.jpg").read_bytes()
ENV_TOKEN = "environment-token-0123456789"
FILE_TOKENS = ["file-token-one-0123456789", "file-token-two-0123456789"]
MEDIA_URL_TTL_S = 4


def test_token_lists_and_files_are_read_and_checked(tmp_path: Path) -> None:
    assert parse_token_list(f" {ENV_TOKEN} ,, {FILE_TOKENS[0]} ", "X") == [ENV_TOKEN,
                                                                          FILE_TOKENS[0]]
    assert parse_token_list("", "X") == []
    file = tmp_path / "tokens"
    file.write_text(f"# the team\n\n{FILE_TOKENS[0]}\n  {FILE_TOKENS[1]}  \n")
    assert read_token_file(file) == FILE_TOKENS


@pytest.mark.parametrize("bad", ["short-token", "has a space in it 0123", "comma,inside,0123456"])
def test_a_weak_or_malformed_token_is_refused_without_showing_it(bad: str) -> None:
    with pytest.raises(TokenError) as refused:
        parse_token_list(bad.replace(",", ";"), "FRAMESEEK_TOKEN")
    assert "FRAMESEEK_TOKEN, token 1: a token must be 16 or more" in str(refused.value)
    assert bad.replace(",", ";") not in str(refused.value)


def test_a_token_file_without_tokens_or_unreadable_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("# nobody yet\n")
    with pytest.raises(TokenError, match="holds no token"):
        Tokens([], empty)
    with pytest.raises(TokenError, match="cannot read it"):
        Tokens([], tmp_path / "missing")


def test_tokens_match_by_fingerprint_and_follow_the_file(tmp_path: Path) -> None:
    file = tmp_path / "tokens"
    file.write_text("\n".join(FILE_TOKENS) + "\n")
    tokens = Tokens([ENV_TOKEN], file)
    assert tokens.match(FILE_TOKENS[1]) == fingerprint(FILE_TOKENS[1])
    assert tokens.match(ENV_TOKEN) == fingerprint(ENV_TOKEN)
    assert tokens.match(FILE_TOKENS[1][:-1]) is None
    assert tokens.match("") is None

    file.write_text(FILE_TOKENS[0] + "\n")  # a line removed: that token is revoked
    assert tokens.match(FILE_TOKENS[1]) is None
    assert tokens.match(FILE_TOKENS[0]) is not None

    file.unlink()  # unreadable: the file's tokens fail closed, the fixed one still works
    assert tokens.match(FILE_TOKENS[0]) is None
    assert tokens.match(ENV_TOKEN) is not None
    assert tokens.count == 1


def test_reload_soon_rereads_a_file_whose_size_and_time_did_not_change(tmp_path: Path) -> None:
    file = tmp_path / "tokens"
    file.write_text(FILE_TOKENS[0] + "\n")
    stat = file.stat()
    tokens = Tokens([], file)
    # The same length, the same modification time: only a SIGHUP can tell.
    file.write_text(FILE_TOKENS[1] + "\n")
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert tokens.match(FILE_TOKENS[1]) is None
    tokens.reload_soon()
    assert tokens.match(FILE_TOKENS[1]) is not None
    assert tokens.match(FILE_TOKENS[0]) is None


def test_signed_links_open_their_own_path_until_they_expire() -> None:
    signer = MediaSigner(ttl_s=60, key=b"k" * 32)
    now = 1_800_000_000.0
    signature = signer.sign("/api/videos/1/file", now)
    assert signer.verify("/api/videos/1/file", signature, now + 59)
    assert not signer.verify("/api/videos/2/file", signature, now)
    assert not signer.verify("/api/videos/1/file", signature, now + 3600)
    expiry, _, mac = signature.partition(".")
    assert not signer.verify("/api/videos/1/file", f"{int(expiry) + 3600}.{mac}", now)
    assert not signer.verify("/api/videos/1/file", f"{expiry}.{mac[:-1]}0", now)
    for garbage in ["", ".", "abc.def", f"{'9' * 40}.{mac}"]:
        assert not signer.verify("/api/videos/1/file", garbage, now)
    # Another server (another key) does not take it.
    assert not MediaSigner(ttl_s=60).verify("/api/videos/1/file", signature, now)


@dataclass
class Guarded:
    server: Server
    token_file: Path


@pytest.fixture(scope="module")
def guarded(sample_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    """A server with a token in FRAMESEEK_TOKEN and two in a token file, and short-lived links."""
    directory = tmp_path_factory.mktemp("auth")
    token_file = directory / "tokens"
    token_file.write_text("\n".join(FILE_TOKENS) + "\n")
    with running_server(sample_index, directory / "server.log", "--token-file", str(token_file),
                        "--media-url-ttl", str(MEDIA_URL_TTL_S), token=ENV_TOKEN) as server:
        yield Guarded(server, token_file)


def protected_requests(server: Server) -> list[tuple[str, str, dict]]:
    """(method, path, httpx arguments) for every route that needs a token."""
    with server.client() as client:
        video = client.get("/api/videos").json()["videos"][0]["id"]
    keyframe = 1
    return [
        ("GET", "/api/videos", {}), ("GET", "/api/stats", {}), ("GET", "/openapi.json", {}),
        ("GET", "/docs", {}), ("GET", f"/api/thumbnails/{keyframe}", {}),
        ("GET", f"/api/videos/{video}/file", {}), ("HEAD", f"/api/videos/{video}/file", {}),
        ("POST", "/api/search", {"files": {"image": ("q.jpg", QUERY, "image/jpeg")},
                                 "params": {"top": 1}}),
    ]


def test_every_protected_route_is_401_without_a_token_and_200_with_one(guarded: Guarded) -> None:
    server = guarded.server
    with httpx.Client(base_url=server.url, timeout=120) as anonymous:
        for method, path, arguments in protected_requests(server):
            refused = anonymous.request(method, path, **arguments)
            assert refused.status_code == 401, (method, path)
            assert refused.headers["www-authenticate"] == 'Bearer realm="frameseek"'
            if method != "HEAD":
                assert refused.json()["detail"].startswith("a token is required")
            for token in [ENV_TOKEN, *FILE_TOKENS]:
                answered = anonymous.request(method, path, headers=bearer(token), **arguments)
                assert answered.status_code == 200, (method, path, answered.text[:200])


def test_a_wrong_token_is_refused_as_invalid(guarded: Guarded) -> None:
    for header in [f"Bearer {ENV_TOKEN}x", "Bearer -", f"Basic {ENV_TOKEN}", ENV_TOKEN]:
        response = httpx.get(f"{guarded.server.url}/api/videos",
                             headers={"Authorization": header}, timeout=60)
        assert response.status_code == 401, header
        assert response.headers["www-authenticate"] == \
            'Bearer realm="frameseek", error="invalid_token"'
        assert response.json() == {"detail": "the token is not valid"}


def test_open_routes_need_no_token(guarded: Guarded) -> None:
    with httpx.Client(base_url=guarded.server.url, timeout=60) as anonymous:
        assert anonymous.get("/healthz").json()["status"] == "ok"
        assert 'id="sign-in"' in anonymous.get("/").text
        assert anonymous.get("/static/app.js").status_code == 200
        # Anything else, even a path that does not exist, is refused before it is looked up.
        assert anonymous.get("/no/such/thing").status_code == 401


def test_signed_links_open_their_file_without_a_token_and_nothing_else(guarded: Guarded) -> None:
    server = guarded.server
    with server.client() as client:
        first = client.post("/api/search", params={"top": 1},
                            files={"image": ("q.jpg", QUERY, "image/jpeg")}).json()["results"][0]
    thumbnail_path, _, signature = first["thumbnail_url"].partition("?")
    video_path, _, video_signature = first["video_url"].partition("?")
    with httpx.Client(base_url=server.url, timeout=60) as anonymous:
        thumbnail = anonymous.get(first["thumbnail_url"])
        assert thumbnail.status_code == 200, thumbnail.text
        assert thumbnail.headers["content-type"] == "image/jpeg"
        ranged = anonymous.get(first["video_url"], headers={"Range": "bytes=0-99"})
        assert ranged.status_code == 206 and len(ranged.content) == 100
        # The thumbnail's signature does not open the video, nor another key frame, nor the API.
        other_keyframe = thumbnail_path.rsplit("/", 1)[0] + "/999999"
        for path in [video_path, other_keyframe, "/api/videos", "/api/stats"]:
            response = anonymous.get(f"{path}?{signature}")
            assert response.status_code == 401, path
        assert anonymous.get(thumbnail_path).status_code == 401
        assert anonymous.get(f"{video_path}?{video_signature}0").status_code == 401

        time.sleep(MEDIA_URL_TTL_S + 2)  # past the expiry, rounded up to a tenth of the lifetime
        expired = anonymous.get(first["thumbnail_url"])
        assert expired.status_code == 401
        assert "expired" in expired.json()["detail"]


def test_a_token_removed_from_the_file_is_refused_from_then_on(guarded: Guarded) -> None:
    server, file = guarded.server, guarded.token_file
    kept, revoked = FILE_TOKENS

    def status(token: str) -> int:
        return httpx.get(f"{server.url}/api/stats", headers=bearer(token), timeout=60).status_code

    assert status(revoked) == 200
    file.write_text(kept + "\n")
    assert status(revoked) == 401
    assert status(kept) == 200 and status(ENV_TOKEN) == 200

    # Put back with the same size and time as the file has now: a changed file that looks the
    # same to stat, which the server re-reads on SIGHUP.
    stat = file.stat()
    file.write_text(revoked + "\n")
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert status(revoked) == 401
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while status(revoked) != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status(revoked) == 200
    assert status(kept) == 401
    server.assert_alive()
    file.write_text("\n".join(FILE_TOKENS) + "\n")


def test_no_token_is_ever_logged(guarded: Guarded) -> None:
    server = guarded.server
    httpx.get(f"{server.url}/api/stats", headers=bearer(f"{ENV_TOKEN}-wrong"), timeout=60)
    httpx.get(f"{server.url}/api/stats", headers=bearer(ENV_TOKEN), timeout=60)
    log = server.log_text()
    for token in [ENV_TOKEN, *FILE_TOKENS]:
        assert token not in log
        assert token[:12] not in log
    # What is logged is each token's fingerprint: at start, and on each request made with it.
    assert f"fingerprints {fingerprint(ENV_TOKEN)}" in log
    assert f"token {fingerprint(ENV_TOKEN)}" in log
