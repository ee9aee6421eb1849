"""Idempotency-Key and per-tenant quotas on POST /dispatch."""

from __future__ import annotations

import threading
from typing import Any

from fastapi.testclient import TestClient

from control_plane.lifecycle import Status
from control_plane.store import Actor
from tests.control_plane.helpers import make_tenant

BODY = {"agent": "shell", "task": "echo once"}


def _post(client: TestClient, tenant: dict, body: dict, key: str | None = None) -> Any:
    headers = {**tenant["headers"], **({"Idempotency-Key": key} if key else {})}
    return client.post("/dispatch", json=body, headers=headers)


def _listed(client: TestClient, tenant: dict) -> list[str]:
    return [
        d["dispatch_id"]
        for d in client.get("/dispatches?limit=100", headers=tenant["headers"]).json()["items"]
    ]


def test_create_dispatch_same_key_same_body_returns_same_dispatch(client: TestClient, tenant: dict) -> None:
    first = _post(client, tenant, BODY, key="build-123")
    second = _post(client, tenant, BODY, key="build-123")
    assert first.status_code == second.status_code == 202
    assert first.json()["dispatch_id"] == second.json()["dispatch_id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert _listed(client, tenant) == [first.json()["dispatch_id"]]


def test_idempotency_key_is_kept_at_least_a_day(client: TestClient, tenant: dict) -> None:
    import time

    _post(client, tenant, BODY, key="kept")
    settings = client.app.state.settings  # type: ignore[attr-defined]
    items = client.app.state.clients.dynamodb.scan(  # type: ignore[attr-defined]
        TableName=settings.dispatches_table,
        FilterExpression="begins_with(dispatch_id, :p)",
        ExpressionAttributeValues={":p": {"S": f"idem#{tenant['tenant_id']}#"}},
    )["Items"]
    assert len(items) == 1
    assert int(items[0]["expires_at"]["N"]) >= time.time() + 24 * 3600 - 60
    assert "kept" not in str(items[0])  # stored hashed


def test_create_dispatch_same_key_other_body_answers_422(client: TestClient, tenant: dict) -> None:
    assert _post(client, tenant, BODY, key="k1").status_code == 202
    reply = _post(client, tenant, {**BODY, "task": "echo twice"}, key="k1")
    assert reply.status_code == 422
    assert reply.json()["field"] == "Idempotency-Key"
    assert len(_listed(client, tenant)) == 1


def test_create_dispatch_same_key_other_tenant_is_independent(
    client: TestClient, tenant: dict, other_tenant: dict
) -> None:
    mine = _post(client, tenant, BODY, key="shared").json()["dispatch_id"]
    theirs = _post(client, other_tenant, {**BODY, "task": "other"}, key="shared")
    assert theirs.status_code == 202
    assert theirs.json()["dispatch_id"] != mine


def test_create_dispatch_concurrent_same_key_creates_one(client: TestClient, tenant: dict) -> None:
    results: list[Any] = []
    barrier = threading.Barrier(8)

    def post() -> None:
        barrier.wait()
        results.append(_post(client, tenant, BODY, key="race"))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {r.status_code for r in results} == {202}
    assert len({r.json()["dispatch_id"] for r in results}) == 1
    assert len(_listed(client, tenant)) == 1


def test_create_dispatch_key_survives_an_earlier_crash_before_the_write(
    client: TestClient, tenant: dict
) -> None:
    # A replica bound the key and died before writing the dispatch: the retry completes the work.
    stores = client.app.state.stores  # type: ignore[attr-defined]
    import hashlib
    import json

    from control_plane.models import DispatchCreate

    canonical = json.dumps(
        DispatchCreate.model_validate(BODY).model_dump(mode="json"), sort_keys=True, separators=(",", ":")
    )
    stores.idempotency.bind(
        tenant_id=tenant["tenant_id"],
        key="crashed",
        request_hash=hashlib.sha256(canonical.encode()).hexdigest(),
        dispatch_id="d-" + "c" * 32,
    )
    reply = _post(client, tenant, BODY, key="crashed")
    assert reply.status_code == 202
    assert reply.json()["dispatch_id"] == "d-" + "c" * 32


def test_create_dispatch_over_queued_quota_answers_429_with_retry_after(client: TestClient) -> None:
    tenant = make_tenant(client, max_queued=2, max_running=5)
    assert _post(client, tenant, BODY).status_code == 202
    assert _post(client, tenant, BODY).status_code == 202
    reply = _post(client, tenant, BODY)
    assert reply.status_code == 429
    assert int(reply.headers["retry-after"]) > 0
    assert reply.json()["field"] == "max_queued"
    assert len(_listed(client, tenant)) == 2


def test_create_dispatch_queues_behind_running_up_to_quota(client: TestClient) -> None:
    tenant = make_tenant(client, max_queued=1, max_running=1)
    stores = client.app.state.stores  # type: ignore[attr-defined]
    first = _post(client, tenant, BODY).json()["dispatch_id"]
    stores.dispatches.transition(dispatch_id=first, to=Status.RUNNING, actor=Actor.system("test"))
    assert _post(client, tenant, BODY).status_code == 202  # waits for the running slot
    reply = _post(client, tenant, BODY)
    assert reply.status_code == 429
    assert reply.json()["field"] == "max_queued"


def test_create_dispatch_over_running_quota_answers_429(client: TestClient, admin_headers: dict) -> None:
    tenant = make_tenant(client, max_queued=5, max_running=5)
    stores = client.app.state.stores  # type: ignore[attr-defined]
    for _ in range(2):
        running = _post(client, tenant, BODY).json()["dispatch_id"]
        stores.dispatches.transition(dispatch_id=running, to=Status.RUNNING, actor=Actor.system("test"))
    # the operator lowers the quota below what already runs: nothing new until some finish
    client.patch(
        f"/tenants/{tenant['tenant_id']}", json={"max_running": 0, "max_queued": 1}, headers=admin_headers
    )
    reply = _post(client, tenant, BODY)
    assert reply.status_code == 429
    assert reply.json()["field"] == "max_running"
    assert "retry-after" in reply.headers


def test_create_dispatch_quota_frees_when_dispatches_finish(client: TestClient) -> None:
    tenant = make_tenant(client, max_queued=1, max_running=1)
    first = _post(client, tenant, BODY).json()["dispatch_id"]
    assert _post(client, tenant, BODY).status_code == 429
    client.delete(f"/dispatch/{first}", headers=tenant["headers"])
    assert _post(client, tenant, BODY).status_code == 202


def test_create_dispatch_replay_is_not_refused_by_quota(client: TestClient) -> None:
    tenant = make_tenant(client, max_queued=1)
    first = _post(client, tenant, BODY, key="again")
    replay = _post(client, tenant, BODY, key="again")
    assert replay.status_code == 202
    assert replay.json()["dispatch_id"] == first.json()["dispatch_id"]
