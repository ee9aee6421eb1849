"""Tenant administration: keys shown once and stored hashed, rotation, quotas and agents, audit."""

from __future__ import annotations

from fastapi.testclient import TestClient

from control_plane.store.tenants import hash_api_key
from tests.control_plane.helpers import make_tenant


def test_create_tenant_answers_key_once_and_stores_only_its_hash(
    client: TestClient, admin_headers: dict
) -> None:
    reply = client.post("/tenants", json={"name": "acme", "max_running": 3}, headers=admin_headers)
    assert reply.status_code == 201
    body = reply.json()
    assert body["api_key"].startswith("op_") and len(body["api_key"]) >= 40
    assert body["api_key"].startswith(body["api_key_prefix"])
    assert (body["max_running"], body["max_queued"], body["allowed_agents"]) == (3, 50, None)
    shown = client.get(f"/tenants/{body['tenant_id']}", headers=admin_headers).json()
    assert "api_key" not in shown and "api_key_hash" not in shown
    raw = client.app.state.clients.dynamodb.get_item(  # type: ignore[attr-defined]
        TableName=client.app.state.settings.tenants_table,  # type: ignore[attr-defined]
        Key={"tenant_id": {"S": body["tenant_id"]}},
    )["Item"]
    assert body["api_key"] not in str(raw)
    assert raw["api_key_hash"]["S"] == hash_api_key(body["api_key"])


def test_rotate_api_key_retires_the_old_one(client: TestClient, admin_headers: dict) -> None:
    tenant = make_tenant(client)
    reply = client.post(f"/tenants/{tenant['tenant_id']}/api-key", headers=admin_headers)
    assert reply.status_code == 200
    new_key = reply.json()["api_key"]
    assert new_key != tenant["api_key"]
    assert client.get("/dispatches", headers=tenant["headers"]).status_code == 401
    assert client.get("/dispatches", headers={"Authorization": f"Bearer {new_key}"}).status_code == 200


def test_update_tenant_sets_quotas_and_agents(client: TestClient, admin_headers: dict) -> None:
    tenant = make_tenant(client)
    reply = client.patch(
        f"/tenants/{tenant['tenant_id']}",
        json={"max_running": 1, "max_queued": 4, "allowed_agents": ["shell", "claude"]},
        headers=admin_headers,
    )
    assert reply.status_code == 200
    body = reply.json()
    assert (body["max_running"], body["max_queued"], body["allowed_agents"], body["version"]) == (
        1, 4, ["claude", "shell"], 2,
    )  # fmt: skip
    refused = client.post("/dispatch", json={"agent": "codex", "task": "x"}, headers=tenant["headers"])
    assert refused.status_code == 422 and refused.json()["field"] == "agent"
    # null opens every agent again; fields left out stay
    reopened = client.patch(
        f"/tenants/{tenant['tenant_id']}", json={"allowed_agents": None}, headers=admin_headers
    )
    assert reopened.json()["allowed_agents"] is None
    assert reopened.json()["max_queued"] == 4


def test_update_tenant_refuses_bad_values_naming_field(client: TestClient, admin_headers: dict) -> None:
    tenant = make_tenant(client)
    for body, field in [
        ({"max_running": -1}, "max_running"),
        ({"allowed_agents": ["hal9000"]}, "allowed_agents"),
        ({"max_queued": None}, "max_queued"),
        ({}, "body"),
        ({"api_key_hash": "x"}, "api_key_hash"),
    ]:
        reply = client.patch(f"/tenants/{tenant['tenant_id']}", json=body, headers=admin_headers)
        assert reply.status_code == 422, body
        assert reply.json()["field"] == field
    assert client.get(f"/tenants/{tenant['tenant_id']}", headers=admin_headers).json()["version"] == 1


def test_tenant_admin_unknown_tenant_answers_404(client: TestClient, admin_headers: dict) -> None:
    assert client.get("/tenants/t-missing", headers=admin_headers).status_code == 404
    assert (
        client.patch("/tenants/t-missing", json={"max_queued": 1}, headers=admin_headers).status_code == 404
    )
    assert client.post("/tenants/t-missing/api-key", headers=admin_headers).status_code == 404


def test_audit_trail_carries_request_ids(client: TestClient, admin_headers: dict) -> None:
    tenant = make_tenant(client)
    client.post(
        "/dispatch",
        json={"agent": "shell", "task": "ls"},
        headers={**tenant["headers"], "X-Request-Id": "req-from-ci-000123"},
    )
    client.post(
        f"/tenants/{tenant['tenant_id']}/api-key", headers={**admin_headers, "X-Request-Id": "rotate-00042"}
    )
    entries = client.get(f"/tenants/{tenant['tenant_id']}/audit", headers=admin_headers).json()["items"]
    by_action = {e["action"]: e for e in entries}
    assert by_action["dispatch.create"]["request_id"] == "req-from-ci-000123"
    assert by_action["dispatch.create"]["actor"] == f"tenant:{tenant['tenant_id']}"
    assert by_action["tenant.rotate_key"]["request_id"] == "rotate-00042"
    assert by_action["tenant.rotate_key"]["actor"] == "admin:admin"
    assert "tenant.create" in by_action
    assert all(tenant["api_key"] not in str(e) for e in entries)


def test_response_carries_request_id(client: TestClient) -> None:
    reply = client.get("/health/live", headers={"X-Request-Id": "trace-abcdef12"})
    assert reply.headers["x-request-id"] == "trace-abcdef12"
    assert (
        client.get("/health/live", headers={"X-Request-Id": "bad id; drop table"})
        .headers["x-request-id"]
        .startswith("req-")
    )


def test_list_tenants_pages_through_all_without_keys(client: TestClient, admin_headers: dict) -> None:
    created = {make_tenant(client, name=f"list-{i}")["tenant_id"] for i in range(3)}
    seen: list[dict] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/tenants", params=params, headers=admin_headers).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert created <= {t["tenant_id"] for t in seen}
    assert all("api_key" not in t and "api_key_hash" not in t for t in seen)
    assert (
        client.get("/tenants", params={"cursor": "forged.cursor"}, headers=admin_headers).status_code == 400
    )
