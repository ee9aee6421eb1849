"""What creating a dispatch costs in AWS calls, and that the savings keep their guarantees.

`POST /dispatch` sits on every client's path and its calls set the API's throughput and its
DynamoDB bill: a known key is confirmed by one consistent read, the record, its audit entry and
its run slot are one transaction, the fleet counters are written in batches, and the queue
message is confirmed by one update.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient

from control_plane.aws import AwsClients
from control_plane.main import create_app
from control_plane.settings import Settings
from control_plane.store.codec import now
from control_plane.store.stats import GAUGE_KEY, FleetStats
from tests.control_plane.helpers import ADMIN_KEY, RecordingTaskControl, make_tenant

BODY = {"agent": "shell", "task": "echo once"}


@contextmanager
def counting(clients: AwsClients) -> Iterator[Counter[str]]:
    """Every AWS call the app's clients make meanwhile, as "service.Operation"."""
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        if threading.current_thread().name != "fleet-stats":  # counted on their own below
            calls[f"{model.service_model.service_name}.{model.name}"] += 1

    services = (clients.dynamodb, clients.sqs, clients.s3, clients.ecs)
    for client in services:
        client.meta.events.register("before-call", count)
    try:
        yield calls
    finally:
        for client in services:
            client.meta.events.unregister("before-call", count)


def _gauge(aws_clients: AwsClients, settings: Settings) -> dict[str, Any]:
    item = aws_clients.dynamodb.get_item(
        TableName=settings.dispatches_table, Key={"dispatch_id": {"S": GAUGE_KEY}}, ConsistentRead=True
    ).get("Item", {})
    return {name: int(value["N"]) for name, value in item.items() if "N" in value}


def test_a_dispatch_with_a_free_run_slot_costs_four_dynamodb_calls_and_one_message(
    client: TestClient, aws_clients: AwsClients
) -> None:
    tenant = make_tenant(client, max_running=5, max_queued=5)
    client.get("/dispatches", headers=tenant["headers"])  # the key is known from here on
    with counting(aws_clients) as calls:
        reply = client.post("/dispatch", json=BODY, headers=tenant["headers"])
    assert reply.status_code == 202
    assert calls == {
        "dynamodb.GetItem": 1,  # the tenant, read consistently: confirms the key, quotas, slots
        "dynamodb.Query": 1,  # its waiting dispatches, counted up to max_queued
        "dynamodb.TransactWriteItems": 1,  # record + audit entry + run slot
        "sqs.SendMessage": 1,
        "dynamodb.UpdateItem": 1,  # the message is confirmed sent (enqueued=true)
    }
    stored = client.app.state.stores.dispatches.get(dispatch_id=reply.json()["dispatch_id"], tenant_id=None)  # type: ignore[attr-defined]
    assert stored.admitted and stored.enqueued
    audit = client.app.state.stores.audit.list(tenant_id=tenant["tenant_id"])  # type: ignore[attr-defined]
    assert [r["action"] for r in audit if r["target"] == stored.dispatch_id] == ["dispatch.create"]


def test_a_dispatch_past_its_tenants_run_slots_waits_unadmitted_and_unqueued(
    client: TestClient, aws_clients: AwsClients
) -> None:
    tenant = make_tenant(client, max_running=1, max_queued=5)
    first = client.post("/dispatch", json=BODY, headers=tenant["headers"]).json()
    with counting(aws_clients) as calls:
        second = client.post("/dispatch", json=BODY, headers=tenant["headers"]).json()
    assert calls["sqs.SendMessage"] == 0
    assert calls["dynamodb.TransactWriteItems"] == 2  # refused for the slot, then written waiting
    stores = client.app.state.stores  # type: ignore[attr-defined]
    assert stores.dispatches.get(dispatch_id=first["dispatch_id"], tenant_id=None).admitted
    waiting = stores.dispatches.get(dispatch_id=second["dispatch_id"], tenant_id=None)
    assert waiting.status == "PENDING" and not waiting.admitted and not waiting.enqueued
    assert stores.tenants.get(tenant_id=tenant["tenant_id"]).run_slots == 1
    audit = stores.audit.list(tenant_id=tenant["tenant_id"])
    assert sorted(r["target"] for r in audit if r["action"] == "dispatch.create") == sorted(
        [first["dispatch_id"], second["dispatch_id"]]
    )


def test_fleet_counters_are_written_in_batches_and_read_fresh(
    client: TestClient, aws_clients: AwsClients, settings: Settings
) -> None:
    stats = FleetStats(client=aws_clients.dynamodb, table=settings.dispatches_table)
    for _ in range(10):
        stats.record_created(agent="batch", created_at=now())
    with counting(aws_clients) as calls:
        stats.flush()
    assert calls == {"dynamodb.UpdateItem": 2}  # this bucket's counter and the gauge, once each
    assert _gauge(aws_clients, settings)["batch#PENDING"] == 10

    # the API's own counters: a read of /health/fleet writes what is pending first
    tenant = make_tenant(client, max_running=20, max_queued=20)
    client.app.state.stores.stats.flush()  # type: ignore[attr-defined]
    before = _gauge(aws_clients, settings).get("shell#PENDING", 0)
    for _ in range(3):
        assert client.post("/dispatch", json=BODY, headers=tenant["headers"]).status_code == 202
    fleet = client.get("/health/fleet", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert fleet.status_code == 200
    assert fleet.json()["agents"]["shell"]["queued"] >= 3
    assert _gauge(aws_clients, settings)["shell#PENDING"] - before >= 3  # other tests' may add


def test_a_key_rotated_by_another_replica_stops_working_at_once(
    client: TestClient, settings: Settings, aws_clients: AwsClients
) -> None:
    """Each replica remembers which tenant a key belongs to, never that the key is valid: the
    tenant's item is read on every call, so a rotation elsewhere takes effect on the next call."""
    tenant = make_tenant(client)
    assert client.get("/dispatches", headers=tenant["headers"]).status_code == 200  # remembered
    other = create_app(settings, task_control=RecordingTaskControl(), clients=aws_clients)
    with TestClient(other) as replica:
        rotated = replica.post(
            f"/tenants/{tenant['tenant_id']}/api-key",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert rotated.status_code == 200, rotated.text
    assert client.get("/dispatches", headers=tenant["headers"]).status_code == 401
    new_key = {"Authorization": "Bearer " + rotated.json()["api_key"]}
    assert client.get("/dispatches", headers=new_key).status_code == 200
