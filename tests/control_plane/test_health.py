"""/health, /health/live, /health/ready and /health/fleet."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from control_plane.aws import AwsClients
from control_plane.hooks import PoolStatus
from control_plane.lifecycle import Status
from control_plane.main import create_app
from control_plane.settings import Settings
from control_plane.store import Actor
from tests.control_plane.helpers import (
    ADMIN_KEY,
    RecordingTaskControl,
    fresh_resources,
    make_tenant,
    settings_for,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _client(settings: Settings, clients: AwsClients, control: Any = None) -> TestClient:
    return TestClient(
        create_app(settings, clients=clients, task_control=control), raise_server_exceptions=False
    )


def test_health_reports_each_component_healthy(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["status"] == "healthy"
    assert set(body["components"]) == {"dynamodb", "s3", "sqs"}  # no ECS check for the local runtime


def test_health_degraded_when_bucket_missing(settings: Settings, aws_clients: AwsClients) -> None:
    broken = settings.model_copy(update={"artifacts_bucket": "no-such-bucket"})
    reply = _client(broken, aws_clients).get("/health")
    assert reply.status_code == 200
    assert reply.json()["status"] == "degraded"
    assert reply.json()["components"]["s3"]["status"] == "unhealthy"


def test_health_unhealthy_and_not_ready_when_table_missing(
    settings: Settings, aws_clients: AwsClients
) -> None:
    broken = _client(settings.model_copy(update={"dispatches_table": "no-such-table"}), aws_clients)
    reply = broken.get("/health")
    assert reply.status_code == 503
    assert reply.json()["status"] == "unhealthy"
    assert broken.get("/health/ready").status_code == 503
    assert broken.get("/health/live").status_code == 200  # liveness never depends on others


def test_health_checks_ecs_only_for_ecs_runtime(settings: Settings, aws_clients: AwsClients) -> None:
    ecs = settings.model_copy(
        update={"runtime": "ecs", "cluster_arn": "arn:aws:ecs:us-east-1:1:cluster/none"}
    )
    body = _client(ecs, aws_clients).get("/health").json()
    assert body["components"]["ecs"]["status"] == "unhealthy"  # that cluster does not exist
    assert body["status"] == "degraded"


@pytest.fixture
def fleet_app(
    moto_endpoint: str, aws_clients: AwsClients
) -> Iterator[tuple[TestClient, RecordingTaskControl]]:
    # fresh tables: the counters start at zero
    config = settings_for(moto_endpoint, fresh_resources(moto_endpoint))
    control = RecordingTaskControl(pool={"shell": PoolStatus(size=3, idle=2)})
    with _client(config, aws_clients, control) as client:
        yield client, control


def test_fleet_health_counts_last_hour_by_agent_and_status(
    fleet_app: tuple[TestClient, RecordingTaskControl],
) -> None:
    client, _ = fleet_app
    stores = client.app.state.stores  # type: ignore[attr-defined]
    tenant = make_tenant(client, max_queued=20)
    system = Actor.system("test")
    ids = [
        client.post("/dispatch", json={"agent": "shell", "task": "x"}, headers=tenant["headers"]).json()[
            "dispatch_id"
        ]
        for _ in range(5)
    ]
    client.post("/dispatch", json={"agent": "claude", "task": "x"}, headers=tenant["headers"])
    for dispatch_id in ids[:4]:
        stores.dispatches.transition(dispatch_id=dispatch_id, to=Status.RUNNING, actor=system)
    for dispatch_id, outcome in zip(
        ids[:3], [Status.COMPLETED, Status.COMPLETED, Status.FAILED], strict=True
    ):
        stores.dispatches.transition(dispatch_id=dispatch_id, to=outcome, actor=system)

    body = client.get("/health/fleet", headers=ADMIN).json()
    shell = body["agents"]["shell"]
    assert (shell["pool_size"], shell["idle"], shell["active"], shell["queued"]) == (3, 2, 1, 1)
    assert shell["finished_last_hour"] == 3
    assert shell["success_rate"] == pytest.approx(2 / 3, abs=1e-3)
    assert shell["avg_duration_s"] is not None and shell["avg_duration_s"] >= 0
    assert body["last_hour"]["by_agent"] == {
        "shell": {"COMPLETED": 2, "FAILED": 1, "RUNNING": 1, "PENDING": 1},
        "claude": {"PENDING": 1},
    }
    assert body["last_hour"]["by_status"] == {"COMPLETED": 2, "FAILED": 1, "RUNNING": 1, "PENDING": 2}
    assert 0 <= body["system"]["memory_percent"] <= 100
    assert body["system"]["cpu_count"] >= 1


def test_fleet_health_is_cached_for_30_seconds(fleet_app: tuple[TestClient, RecordingTaskControl]) -> None:
    client, _ = fleet_app
    first = client.get("/health/fleet", headers=ADMIN).json()
    tenant = make_tenant(client)
    client.post("/dispatch", json={"agent": "shell", "task": "x"}, headers=tenant["headers"])
    second = client.get("/health/fleet", headers=ADMIN).json()
    assert (first["cached"], second["cached"]) == (False, True)
    assert second["generated_at"] == first["generated_at"]
    assert second["agents"]["shell"]["queued"] == first["agents"]["shell"]["queued"]
    assert client.app.state.settings.fleet_cache_s == 30  # type: ignore[attr-defined]
