"""Every operation of ``/openapi.json``, fuzzed over real HTTP: no 5xx, every response as documented.

Bounded and derandomized so that the suite stays fast and a failure repeats. The runner protocol
(``/internal/*``) and the model gateway (``/gateway/*``) are not in the published schema: the
first needs a dispatch's task token and the second forwards to a provider, so neither has a
contract of its own to fuzz.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from control_plane.main import create_app
from control_plane.settings import Settings
from tests.control_plane.helpers import ADMIN_KEY, make_tenant, serving

EXAMPLES_PER_OPERATION = 20
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


# The published contract, read from an app that serves nothing; each test serves its own app.
# (schemathesis.pytest.from_fixture would load it from the served app, but its lazy loader sets
# the node's `_nodeid`, which pytest 9 no longer has.)
schema = schemathesis.openapi.from_dict(
    create_app(Settings.model_validate({"env": "local", "admin_key": ADMIN_KEY})).openapi()
)


@dataclass(frozen=True)
class Served:
    base_url: str
    tenant_headers: dict[str, str]
    known_ids: dict[str, str]  # path parameter -> an id that exists, so that not every call is a 404


@pytest.fixture
def served(app: Any, client: TestClient) -> Iterator[Served]:
    """The app on a loopback port, with one tenant and one of its dispatches."""
    tenant = make_tenant(client)
    dispatch = client.post("/dispatch", json={"agent": "shell", "task": "echo hi"}, headers=tenant["headers"])
    assert dispatch.status_code == 202, dispatch.text
    known_ids = {"tenant_id": tenant["tenant_id"], "dispatch_id": dispatch.json()["dispatch_id"]}
    with serving(app) as (host, port):
        yield Served(f"http://{host}:{port}", tenant["headers"], known_ids)


def _headers(case: Any, tenant_headers: dict[str, str]) -> dict[str, str]:
    path = case.operation.path
    if path.startswith("/tenants") or path == "/health/fleet":
        return {"Authorization": f"Bearer {ADMIN_KEY}"}
    return tenant_headers


# ``follow=true`` on the logs holds the connection open until the dispatch ends, which a fuzzed
# dispatch never does; the rest of that operation is fuzzed.
@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: Any, served: Served) -> None:
    if case.query and case.query.get("follow") not in (None, False, "false"):
        case.query["follow"] = False
    headers = _headers(case, served.tenant_headers)
    case.call_and_validate(base_url=served.base_url, headers=headers, checks=CHECKS, timeout=10)
    # Generated ids name nothing; the same case again on the records that exist
    known = {name: served.known_ids[name] for name in case.path_parameters or {} if name in served.known_ids}
    if known:
        case.path_parameters = {**case.path_parameters, **known}
        case.call_and_validate(base_url=served.base_url, headers=headers, checks=CHECKS, timeout=10)


def _documents(client: TestClient, method: str, path: str, status: int) -> bool:
    operation = client.get("/openapi.json").json()["paths"][path][method]
    return str(status) in operation["responses"]


def test_dispatch_body_that_is_not_json_answers_a_documented_400(
    client: TestClient, tenant: dict[str, Any]
) -> None:
    reply = client.post(
        "/dispatch", content=b"\xff{", headers={**tenant["headers"], "Content-Type": "application/json"}
    )
    assert reply.status_code == 400
    assert _documents(client, "post", "/dispatch", 400)


def test_tenant_body_that_is_not_json_answers_a_documented_400(client: TestClient) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}
    assert client.post("/tenants", content=b"\xff{", headers=headers).status_code == 400
    assert client.patch("/tenants/t-1", content=b"\xff{", headers=headers).status_code == 400
    assert _documents(client, "post", "/tenants", 400)
    assert _documents(client, "patch", "/tenants/{tenant_id}", 400)


def test_listing_with_unknown_agent_or_foreign_cursor_answers_a_documented_400(
    client: TestClient, tenant: dict[str, Any]
) -> None:
    assert client.get("/dispatches?agent=nope", headers=tenant["headers"]).status_code == 400
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert client.get("/tenants?cursor=", headers=admin).status_code == 400
    assert _documents(client, "get", "/dispatches", 400)
    assert _documents(client, "get", "/tenants", 400)


def test_budget_finer_than_a_microdollar_is_rounded_to_one(
    client: TestClient, tenant: dict[str, Any]
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    reply = client.patch(
        f"/tenants/{tenant['tenant_id']}",
        json={"budget_dispatch_usd": 1.7e-159, "budget_daily_usd": 0.12345678},
        headers=admin,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["budget_dispatch_usd"] == 0
    assert reply.json()["budget_daily_usd"] == 0.123457
