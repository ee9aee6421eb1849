"""Helpers shared by the control-plane tests (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi.testclient import TestClient

from control_plane.bootstrap import Resources, ensure_resources
from control_plane.hooks import PoolStatus
from control_plane.settings import Settings

ADMIN_KEY = "op_admin_" + "k" * 40


@contextlib.contextmanager
def serving(app: Any) -> Iterator[tuple[str, int]]:
    """``app`` served by uvicorn on a loopback port for real HTTP clients; (host, port)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield host, port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class RecordingTaskControl:
    """Stands in for the engine: records stop requests, as the real runtime would receive them."""

    stopped: list[tuple[str, str]] = field(default_factory=list)
    pool: dict[str, PoolStatus] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def stop_task(self, task_id: str, *, reason: str) -> None:
        with self.lock:
            self.stopped.append((task_id, reason))

    def pools(self) -> Mapping[str, PoolStatus]:
        return self.pool


def fresh_resources(endpoint: str) -> Resources:
    """A new set of tables, queues and bucket, so that counters and listings start empty."""
    return ensure_resources(endpoint_url=endpoint, prefix=f"t{uuid.uuid4().hex[:10]}")


def settings_for(endpoint: str, resources: Resources, **overrides: Any) -> Settings:
    return Settings.model_validate(
        {
            "env": "local",
            "aws_endpoint_url": endpoint,
            "admin_key": ADMIN_KEY,
            "dispatch_queue_urls": resources.dispatch_queue_urls,
            "artifacts_bucket": resources.artifacts_bucket,
            "task_events_queue_url": resources.task_events_queue_url,
            **resources.tables,
            **overrides,
        }
    )


def make_tenant(client: TestClient, **body: Any) -> dict[str, Any]:
    reply = client.post(
        "/tenants", json={"name": "acme", **body}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert reply.status_code == 201, reply.text
    tenant: dict[str, Any] = reply.json()
    tenant["headers"] = {"Authorization": f"Bearer {tenant['api_key']}"}
    return tenant
