"""Who may use the server: bearer tokens, and short-lived signed links for media.

With tokens configured, every request but `/healthz` and the page's own code (`/`, `/static/`,
which hold nothing of the index) needs `Authorization: Bearer TOKEN`. `<img>` and `<video>`
cannot send that header, so the thumbnail and video URLs in the API's answers carry instead a
`sig` parameter: an expiry and an HMAC of the expiry and the path, under a key drawn at start.
Such a link opens that one file until it expires, and is useless for anything else.

Tokens come from `FRAMESEEK_TOKEN` (comma-separated) and from a token file (one per line), which
is re-read when it changes or on SIGHUP, so that removing a line revokes a token. They are
compared in constant time and never logged: logs name a token by a fingerprint (the first 8 hex
digits of its SHA-256), which says which line to remove and reveals nothing of it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("frameseek.server")

# RFC 6750's token68 alphabet; 16 characters at least, so that no one deploys "secret".
TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{16,}")
SIGNATURE_PARAM = "sig"
DEFAULT_MEDIA_URL_TTL_S = 3600.0
REALM = 'Bearer realm="frameseek"'


class TokenError(ValueError):
    """A token configuration that cannot be used, in one line that shows no token."""


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:8]


def parse_token_list(text: str, origin: str) -> list[str]:
    """Comma-separated tokens, as `FRAMESEEK_TOKEN` holds them; blanks around commas ignored."""
    tokens = [part.strip() for part in text.split(",") if part.strip()]
    for number, token in enumerate(tokens, 1):
        _check(token, f"{origin}, token {number}")
    return tokens


def read_token_file(path: Path) -> list[str]:
    """One token per line; blank lines and lines starting with # are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"token file {path}: cannot read it ({exc})") from exc
    tokens = []
    for number, line in enumerate(lines, 1):
        token = line.strip()
        if token and not token.startswith("#"):
            _check(token, f"token file {path}, line {number}")
            tokens.append(token)
    return tokens


def _check(token: str, where: str) -> None:
    if not TOKEN.fullmatch(token):
        raise TokenError(f"{where}: a token must be 16 or more of the characters A-Z a-z 0-9 "
                         f"- . _ ~ + / = (e.g. python3 -c 'import secrets; "
                         f"print(secrets.token_urlsafe(32))')")


class Tokens:
    """The tokens accepted now: the fixed ones, and the token file's as of its last change.

    A token file that becomes unreadable or malformed accepts none of its tokens until it is
    fixed (fail closed); the fixed tokens still work.
    """

    def __init__(self, fixed: Sequence[str], file: Path | None = None) -> None:
        self._fixed = tuple(fixed)
        self._file = file
        self._lock = threading.Lock()
        self._stale = False
        self._seen: tuple[int, int, int] | None = None
        self._from_file: tuple[str, ...] = ()
        if file is not None:
            self._from_file = tuple(read_token_file(file))
            self._seen = _signature(file)
            if not self._from_file:
                raise TokenError(f"token file {file}: holds no token")

    @property
    def count(self) -> int:
        return len(self._current())

    def fingerprints(self) -> list[str]:
        return [fingerprint(token) for token in self._current()]

    def reload_soon(self) -> None:
        """Re-read the token file before the next check (SIGHUP; safe in a signal handler)."""
        self._stale = True

    def match(self, presented: str) -> str | None:
        """The fingerprint of the token `presented` is, if it is one; every token is compared,
        in constant time each, so the time taken does not tell which one nearly matched."""
        found = None
        given = presented.encode()
        for token in self._current():
            if hmac.compare_digest(given, token.encode()):
                found = token
        return fingerprint(found) if found is not None else None

    def _current(self) -> tuple[str, ...]:
        if self._file is None:
            return self._fixed
        with self._lock:
            seen = _signature(self._file)
            if self._stale or seen != self._seen:
                self._stale = False
                self._seen = seen
                try:
                    self._from_file = tuple(read_token_file(self._file))
                except TokenError as exc:
                    self._from_file = ()
                    log.warning("%s; its tokens are refused until it is fixed", exc)
                else:
                    log.info("token file %s re-read: %d tokens", self._file,
                             len(self._from_file))
            return self._fixed + self._from_file


def _signature(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is edited or replaced (an editor's rename counts)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


class MediaSigner:
    """`sig` values for media links: `EXPIRY.HMAC` over the expiry and the route path.

    Expiries are rounded up to a tenth of the lifetime, so the same file keeps the same URL for a
    while: the browser's cache and the player (which reloads on a new `src`) both gain.
    """

    def __init__(self, ttl_s: float = DEFAULT_MEDIA_URL_TTL_S, key: bytes | None = None) -> None:
        self.ttl_s = ttl_s
        self._key = key or secrets.token_bytes(32)

    def sign(self, path: str, now: float | None = None) -> str:
        step = max(1, math.ceil(self.ttl_s / 10))
        expiry = math.ceil(((now or time.time()) + self.ttl_s) / step) * step
        return f"{expiry}.{self._mac(path, expiry)}"

    def verify(self, path: str, value: str, now: float | None = None) -> bool:
        expiry, _, mac = value.partition(".")
        if not expiry.isdigit() or len(expiry) > 12:
            return False
        # Compared before the expiry, so that a forged link and an expired one take alike.
        valid = hmac.compare_digest(mac.encode(), self._mac(path, int(expiry)).encode())
        return valid and int(expiry) >= (now or time.time())

    def _mac(self, path: str, expiry: int) -> str:
        return hmac.new(self._key, f"{expiry}\n{path}".encode(), hashlib.sha256).hexdigest()


def is_open(path: str) -> bool:
    """Routes anyone may reach: the liveness probe and the page's code, which asks for a token."""
    return path in ("/healthz", "/") or path.startswith("/static/")


def is_media(path: str) -> bool:
    """Routes a signed link may open instead of a token: thumbnails and video files."""
    return path.startswith("/api/thumbnails/") or (path.startswith("/api/videos/")
                                                   and path.endswith("/file"))


class AccessControl:
    """ASGI middleware: refuses with 401 what needs a token and has none, and records for the
    routes who the client is (`scope["state"]["client"]`: a token's fingerprint, else the
    address), which the rate limit and the access log use."""

    def __init__(self, app: ASGIApp, tokens: Tokens | None, signer: MediaSigner) -> None:
        self.app = app
        self.tokens = tokens
        self.signer = signer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        address = scope["client"][0] if scope.get("client") else "?"
        state["client"] = f"address:{address}"
        if self.tokens is None:
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        presented = _bearer(scope)
        token = self.tokens.match(presented) if presented else None
        if token is not None:
            state["client"] = state["token"] = f"token:{token}"
            await self.app(scope, receive, send)
            return
        signatures = _signatures(scope) if is_media(path) else []
        if is_open(path) or any(self.signer.verify(path, value) for value in signatures):
            await self.app(scope, receive, send)
        elif presented is not None:
            await _refuse(send, "the token is not valid", invalid=True)
        elif signatures:
            await _refuse(send, "this link has expired or is not valid: search again for a "
                                "fresh one", invalid=True)
        else:
            await _refuse(send, "a token is required: send the header "
                                "Authorization: Bearer TOKEN")


def route_path(scope: Scope) -> str:
    """The path within the application: without the `--root-path` prefix, if it carries one."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root):] or "/"
    return path


def _signatures(scope: Scope) -> list[str]:
    query = scope.get("query_string", b"").decode("latin-1")
    prefix = f"{SIGNATURE_PARAM}="
    return [part[len(prefix):] for part in query.split("&") if part.startswith(prefix)]


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            return credentials.strip() if scheme.lower() == "bearer" else ""
    return None


async def _refuse(send: Send, detail: str, invalid: bool = False) -> None:
    challenge = f'{REALM}, error="invalid_token"' if invalid else REALM
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": 401, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", challenge.encode())]})
    await send({"type": "http.response.body", "body": body})


def tokens_from_environment(file: Path | None) -> Tokens | None:
    """The tokens `FRAMESEEK_TOKEN` and the token file name; None if neither names any."""
    fixed = parse_token_list(os.environ.get("FRAMESEEK_TOKEN", ""), "FRAMESEEK_TOKEN")
    if not fixed and file is None:
        return None
    return Tokens(fixed, file)
