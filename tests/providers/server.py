"""The base of the fake model providers: a threaded HTTP server on loopback that records
every request and answers the model calls from a script the test sets.

A provider module (anthropic.py, openai_chat.py, ...) subclasses :class:`FakeProvider`:
``route`` answers what is not a model call (model lists, token counts) and ``error`` shapes
an error body the way that API does. The test scripts the model calls in order with
:meth:`FakeProvider.script`; each step is a :class:`Reply` or a function of the request
returning one. A model call beyond the script answers 500, so a CLI that calls once more
than the test expected fails loudly instead of hanging.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


@dataclass(frozen=True)
class Reply:
    """One answer: a JSON body, or a stream of server-sent events (``events`` are the raw
    ``data`` payloads, dicts encoded as JSON), or raw bytes (for a malformed answer)."""

    status: int = 200
    body: Any = None
    events: tuple[tuple[str | None, Any], ...] | None = None  # (event name or None, data)
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # A stream sends its first event, then waits for this before the rest (a model that is
    # still generating): a test can see what arrived before the stream's end.
    hold: threading.Event | None = None

    @staticmethod
    def sse(*events: tuple[str | None, Any], status: int = 200) -> Reply:
        return Reply(status=status, events=tuple(events))


Step = Reply | Callable[[Request], Reply]


def sse_bytes(events: tuple[tuple[str | None, Any], ...]) -> Iterator[bytes]:
    for name, data in events:
        payload = data if isinstance(data, str) else json.dumps(data)
        head = f"event: {name}\n" if name else ""
        yield f"{head}data: {payload}\n\n".encode()


class FakeProvider:
    """Start with :meth:`start` (or as a context manager), stop with :meth:`stop`."""

    # Streams end by closing the connection unless this is set: then they are sent chunked and
    # the connection stays open for the next request, as a provider keeps its connections.
    keep_alive_streams = False

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.model_calls: list[Request] = []
        self._steps: list[Step] = []
        self._after: Step | None = None
        self._lock = threading.Lock()
        self.url = ""

    # -- what a provider module says ------------------------------------------------------

    def is_model_call(self, request: Request) -> bool:
        raise NotImplementedError

    def route(self, request: Request) -> Reply:
        """Answers a request that is not a model call."""
        return self.error(404, f"no route for {request.method} {request.path}")

    def error(self, status: int, message: str) -> Reply:
        return Reply(status=status, body={"error": {"message": message}})

    # -- what a test says -----------------------------------------------------------------

    def script(self, *steps: Step, after: Step | None = None) -> None:
        """The answers to the next model calls, in order, then ``after`` to every further call
        (an error that persists through the CLI's retries); forgets earlier requests."""
        with self._lock:
            self._steps = list(steps)
            self._after = after
            self.requests.clear()
            self.model_calls.clear()

    # -- the server -----------------------------------------------------------------------

    def answer(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            if not self.is_model_call(request):
                step: Step | None = None
            else:
                self.model_calls.append(request)
                step = self._steps.pop(0) if self._steps else self._after
                if step is None:
                    step = self.error(500, "the test scripted no more answers")
        if step is None:
            return self.route(request)
        return step(request) if callable(step) else step

    def start(self) -> FakeProvider:
        handler = type("Handler", (_Handler,), {"provider": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    provider: FakeProvider
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as written, as a provider's do

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, self.path, dict(self.headers.items()), body)
        reply = self.provider.answer(request)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.events is not None:
            # Streamed in pieces, as a provider does; the connection closes at the end (or,
            # with keep_alive_streams, the chunked stream ends and the connection stays).
            chunked = self.provider.keep_alive_streams
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header(
                "Transfer-Encoding" if chunked else "Connection", "chunked" if chunked else "close"
            )
            self.end_headers()
            for index, chunk in enumerate(sse_bytes(reply.events)):
                if index == 1 and reply.hold is not None:
                    reply.hold.wait(30)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                self.wfile.flush()
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            self.close_connection = not chunked
            return
        if reply.raw is not None:
            data = reply.raw
            content_type = reply.headers.get("Content-Type", "text/event-stream")
        else:
            data = json.dumps(reply.body).encode() if reply.body is not None else b""
            content_type = "application/json"
        if "Content-Type" not in reply.headers:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_CONNECT = _handle  # noqa: N815 - http.server's naming
