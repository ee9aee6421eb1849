"""Control-plane fixtures: the app on a TestClient, its data on the moto server over HTTP."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from control_plane.aws import AwsClients, make_clients
from control_plane.bootstrap import Resources, ensure_resources
from control_plane.hooks import PoolStatus
from control_plane.main import create_app
from control_plane.settings import Settings

ADMIN_KEY = "op_admin_" + "k" * 40


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
    return Settings(
        env="local",
        aws_endpoint_url=endpoint,
        admin_key=ADMIN_KEY,
        dispatch_queue_urls=resources.dispatch_queue_urls,
        artifacts_bucket=resources.artifacts_bucket,
        task_events_queue_url=resources.task_events_queue_url,
        **resources.tables,
        **overrides,
    )


@pytest.fixture(scope="session")
def shared_resources(moto_endpoint: str) -> Resources:
    return fresh_resources(moto_endpoint)


@pytest.fixture
def task_control() -> RecordingTaskControl:
    return RecordingTaskControl()


@pytest.fixture
def settings(moto_endpoint: str, shared_resources: Resources) -> Settings:
    return settings_for(moto_endpoint, shared_resources)


@pytest.fixture(scope="session")
def aws_clients(moto_endpoint: str, shared_resources: Resources) -> AwsClients:
    # boto3 clients take ~0.1 s each to build; every app of the session shares one set
    return make_clients(settings_for(moto_endpoint, shared_resources))


@pytest.fixture
def app(settings: Settings, task_control: RecordingTaskControl, aws_clients: AwsClients) -> Any:
    return create_app(settings, task_control=task_control, clients=aws_clients)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


def make_tenant(client: TestClient, **body: Any) -> dict[str, Any]:
    reply = client.post(
        "/tenants", json={"name": "acme", **body}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert reply.status_code == 201, reply.text
    tenant: dict[str, Any] = reply.json()
    tenant["headers"] = {"Authorization": f"Bearer {tenant['api_key']}"}
    return tenant


@pytest.fixture
def tenant(client: TestClient) -> dict[str, Any]:
    return make_tenant(client)


@pytest.fixture
def other_tenant(client: TestClient) -> dict[str, Any]:
    return make_tenant(client, name="globex")
