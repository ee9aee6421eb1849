"""ASGI middleware: request ids and access log, and a hard limit on request body size.

Both are plain ASGI (not BaseHTTPMiddleware) so that they wrap the body stream itself: an
oversized body is refused with 413 after at most `max_body_bytes` + one chunk was read, whether
or not the client declared a Content-Length.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control_plane.observability import new_request_id, reset_request_id, set_request_id

log = logging.getLogger("outpost.access")
Problem413 = {
    "type": "https://outpost.dev/problems/payload-too-large",
    "title": "Payload Too Large",
    "status": 413,
}


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = new_request_id(headers.get(b"x-request-id", b"").decode("latin-1") or None)
        token = set_request_id(request_id)
        started = time.perf_counter()
        status = {"code": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            caller = scope.get("state", {}).get("caller")
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status["code"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    "tenant_id": getattr(getattr(caller, "tenant", None), "tenant_id", None),
                },
            )
            reset_request_id(token)


class BodyLimit:
    """``max_body_bytes`` for every path but those under a prefix of ``limits_by_prefix``,
    which have their own (the model gateway's prompts are far larger than the API's bodies)."""

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, limits_by_prefix: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.limits_by_prefix = dict(limits_by_prefix or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = next(
            (n for prefix, n in self.limits_by_prefix.items() if scope["path"].startswith(prefix)),
            self.max_body_bytes,
        )
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._refuse(scope, send, limit)
            return
        # Read the body here, up to the limit, then replay it to the app.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(scope, send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send, limit: int) -> None:
        body: dict[str, Any] = {
            **Problem413,
            "detail": f"the request body exceeds {limit} bytes",
            "field": "body",
            "instance": scope["path"],
        }
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
