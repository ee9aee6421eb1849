"""The embedded AWS emulator of local mode and the tests: a moto server on loopback.

moto applies a DynamoDB write as read, check the condition, write — with no lock, so two
threads of its server can both pass one item's condition (seen: two of twenty conflicting
`transition` calls with the same expected version both "won"). DynamoDB itself applies the
writes to an item one at a time; everything Outpost proves about conditional writes (claims,
leases, run slots) depends on that. This server therefore applies DynamoDB requests one at a
time. Other services (SQS long polls above all) keep moto's thread per request. Two of its
DynamoDB costs that grew with the table are removed (control_plane.emulator_dynamodb).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from control_plane import emulator_dynamodb

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class SerializedDynamoDB:
    """WSGI middleware: DynamoDB requests run one at a time, as DynamoDB applies an item's writes."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB_"):
            return self._app(environ, start_response)
        with self._lock:
            return list(self._app(environ, start_response))  # the whole answer, inside the lock


class EmulatorServer(ThreadedMotoServer):
    """moto's threaded server with DynamoDB requests serialized (`SerializedDynamoDB`)."""

    def __init__(self, ip_address: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        emulator_dynamodb.install()

    def _server_entry(self) -> None:
        app = SerializedDynamoDB(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()

    @property
    def url(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"
