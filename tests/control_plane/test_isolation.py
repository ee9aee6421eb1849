"""Every endpoint x (no key, wrong key, another tenant's key): nobody reaches what is not theirs."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

WRONG = {"Authorization": "Bearer op_" + "x" * 43}
NO_KEY: dict[str, str] = {}
DISPATCH_BODY = {"agent": "shell", "task": "echo hi"}

# (method, path template, json body); {d} is tenant A's dispatch, {t} tenant A's id
TENANT_ENDPOINTS = [
    ("POST", "/dispatch", DISPATCH_BODY),
    ("GET", "/dispatch/{d}", None),
    ("DELETE", "/dispatch/{d}", None),
    ("GET", "/dispatches", None),
    ("GET", "/dispatch/{d}/logs", None),
    ("GET", "/dispatch/{d}/artifacts", None),
]
ADMIN_ENDPOINTS = [
    ("POST", "/tenants", {"name": "intruder"}),
    ("GET", "/tenants", None),
    ("GET", "/tenants/{t}", None),
    ("PATCH", "/tenants/{t}", {"max_queued": 1000}),
    ("POST", "/tenants/{t}/api-key", None),
    ("GET", "/tenants/{t}/audit", None),
    ("GET", "/health/fleet", None),
]
ALL = TENANT_ENDPOINTS + ADMIN_ENDPOINTS


@pytest.fixture
def dispatch(client: TestClient, tenant: dict[str, Any]) -> dict[str, Any]:
    reply = client.post("/dispatch", json=DISPATCH_BODY, headers=tenant["headers"])
    assert reply.status_code == 202
    body: dict[str, Any] = reply.json()
    return body


def _call(client: TestClient, method: str, path: str, body: Any, headers: dict[str, str], **ids: str) -> Any:
    return client.request(method, path.format(**ids), json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body"), ALL)
@pytest.mark.parametrize("headers", [NO_KEY, WRONG], ids=["no-key", "wrong-key"])
def test_refuse_endpoint_without_valid_key(
    client: TestClient, tenant: dict, dispatch: dict, method: str, path: str, body: Any, headers: dict
) -> None:
    reply = _call(client, method, path, body, headers, d=dispatch["dispatch_id"], t=tenant["tenant_id"])
    assert reply.status_code == 401
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.headers["www-authenticate"].startswith("Bearer")
    # the dispatch is untouched
    assert (
        client.get(f"/dispatch/{dispatch['dispatch_id']}", headers=tenant["headers"]).json()["status"]
        == "PENDING"
    )


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ENDPOINTS)
def test_refuse_admin_endpoint_with_tenant_key(
    client: TestClient, tenant: dict, other_tenant: dict, method: str, path: str, body: Any
) -> None:
    reply = _call(client, method, path, body, other_tenant["headers"], t=tenant["tenant_id"])
    assert reply.status_code == 403
    assert reply.json()["title"] == "Forbidden"


@pytest.mark.parametrize("path", ["/dispatch/{d}", "/dispatch/{d}/logs", "/dispatch/{d}/artifacts"])
def test_hide_other_tenants_dispatch_like_a_missing_one(
    client: TestClient, tenant: dict, other_tenant: dict, dispatch: dict, path: str
) -> None:
    theirs = client.get(path.format(d=dispatch["dispatch_id"]), headers=other_tenant["headers"])
    missing_id = "d-" + "0" * 32
    missing = client.get(path.format(d=missing_id), headers=other_tenant["headers"])
    assert theirs.status_code == missing.status_code == 404
    strip = ("instance", "request_id", "detail")
    assert {k: v for k, v in theirs.json().items() if k not in strip} == {
        k: v for k, v in missing.json().items() if k not in strip
    }
    assert theirs.json()["detail"] == missing.json()["detail"].replace(missing_id, dispatch["dispatch_id"])


def test_cancel_other_tenants_dispatch_answers_404_and_changes_nothing(
    client: TestClient, tenant: dict, other_tenant: dict, dispatch: dict
) -> None:
    reply = client.delete(f"/dispatch/{dispatch['dispatch_id']}", headers=other_tenant["headers"])
    assert reply.status_code == 404
    mine = client.get(f"/dispatch/{dispatch['dispatch_id']}", headers=tenant["headers"]).json()
    assert mine["status"] == "PENDING"
    assert mine["version"] == 1


def test_list_never_shows_other_tenants_dispatches(
    client: TestClient, tenant: dict, other_tenant: dict, dispatch: dict
) -> None:
    for query in ("", "?status=PENDING", "?agent=shell", "?status=PENDING&agent=shell"):
        listed = client.get(f"/dispatches{query}", headers=other_tenant["headers"]).json()
        assert dispatch["dispatch_id"] not in {d["dispatch_id"] for d in listed["items"]}
    own = client.get("/dispatches", headers=tenant["headers"]).json()
    assert dispatch["dispatch_id"] in {d["dispatch_id"] for d in own["items"]}


def test_create_with_other_tenants_key_creates_only_in_that_tenant(
    client: TestClient, tenant: dict, other_tenant: dict, dispatch: dict
) -> None:
    reply = client.post("/dispatch", json=DISPATCH_BODY, headers=other_tenant["headers"])
    assert reply.status_code == 202
    assert (
        client.get(f"/dispatch/{reply.json()['dispatch_id']}", headers=tenant["headers"]).status_code == 404
    )
    assert (
        client.get(f"/dispatch/{reply.json()['dispatch_id']}", headers=other_tenant["headers"]).status_code
        == 200
    )


@pytest.mark.parametrize(("method", "path", "body"), TENANT_ENDPOINTS)
def test_refuse_dispatch_endpoint_with_admin_key(
    client: TestClient, admin_headers: dict, dispatch: dict, method: str, path: str, body: Any
) -> None:
    reply = _call(client, method, path, body, admin_headers, d=dispatch["dispatch_id"])
    assert reply.status_code == 403


@pytest.mark.parametrize("path", ["/health", "/health/live", "/health/ready", "/openapi.json"])
def test_serve_probes_without_key(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200
