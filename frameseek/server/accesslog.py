"""One line per request, as text or as one JSON object, logged to `frameseek.access`.

It replaces uvicorn's access log, which prints the query string: that holds media links'
signatures. Here the query is logged with every `sig` value cut out, and the client is named by
its address and, where it sent one, by its token's fingerprint, never by the token.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from frameseek.server.auth import SIGNATURE_PARAM

log = logging.getLogger("frameseek.access")

AccessLogFormat = Literal["text", "json"]


def redacted_query(query: str) -> str:
    prefix = f"{SIGNATURE_PARAM}="
    return "&".join(f"{prefix}…" if part.startswith(prefix) else part
                    for part in query.split("&") if part)


class AccessLog:
    """ASGI middleware: logs each HTTP request once its answer is sent (or has failed)."""

    def __init__(self, app: ASGIApp, format: AccessLogFormat) -> None:
        self.app = app
        self.format = format

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        answer = {"status": 500, "bytes": 0}

        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting)
        finally:
            self._log(scope, answer["status"], answer["bytes"],
                      (time.perf_counter() - began) * 1000)

    def _log(self, scope: Scope, status: int, size: int, ms: float) -> None:
        client = scope.get("client")
        state = scope.get("state", {})
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "client": client[0] if client else None,
            "token": state.get("token", "").removeprefix("token:") or None,
            "method": scope["method"],
            "path": scope["path"],
            "query": redacted_query(scope.get("query_string", b"").decode("latin-1")),
            "status": status,
            "bytes": size,
            "ms": round(ms, 1),
        }
        if self.format == "json":
            log.info("%s", json.dumps(entry, ensure_ascii=False))
            return
        target = entry["path"] + (f"?{entry['query']}" if entry["query"] else "")
        who = (entry["client"] or "?") + (f" token {entry['token']}" if entry["token"] else "")
        log.info('%s "%s %s" %d %d B %.1f ms', who, entry["method"], target, status, size, ms)
