"""POST /dispatch `model`: allowed only when the agent's settings and the tenant allow it."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from control_plane.bootstrap import Resources
from control_plane.settings import Settings
from tests.control_plane.helpers import RecordingTaskControl, make_tenant, settings_for

# The shapes an operator sets (cdk.json's agent_settings, OUTPOST_AGENT_SETTINGS in local mode).
AGENT_SETTINGS = {
    "claude": {
        "default_model": "claude-sonnet-4-5",
        "allowed_models": ["claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5"],
        "base_url": "https://gateway.example.com/anthropic",
    },
    "codex": {"default_model": "gpt-5-codex"},
}


@pytest.fixture
def settings(moto_endpoint: str, shared_resources: Resources) -> Settings:
    return settings_for(moto_endpoint, shared_resources, agent_settings=AGENT_SETTINGS)


def dispatches(client: TestClient, tenant: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get("/dispatches?limit=100", headers=tenant["headers"]).json()[
        "items"
    ]
    return items


def test_dispatch_with_an_allowed_model_records_it(client: TestClient, tenant: dict[str, Any]) -> None:
    reply = client.post(
        "/dispatch",
        json={"agent": "claude", "task": "fix it", "model": "claude-opus-4-1"},
        headers=tenant["headers"],
    )
    assert reply.status_code == 202, reply.text
    assert reply.json()["model"] == "claude-opus-4-1"
    shown = client.get(f"/dispatch/{reply.json()['dispatch_id']}", headers=tenant["headers"]).json()
    assert shown["model"] == "claude-opus-4-1"
    assert [d["model"] for d in dispatches(client, tenant)] == ["claude-opus-4-1"]


def test_dispatch_without_a_model_uses_the_default(client: TestClient, tenant: dict[str, Any]) -> None:
    reply = client.post("/dispatch", json={"agent": "claude", "task": "fix it"}, headers=tenant["headers"])
    assert reply.status_code == 202, reply.text
    assert reply.json()["model"] is None  # the task's OUTPOST_AGENT_MODEL applies


def test_the_default_model_may_be_named(client: TestClient, tenant: dict[str, Any]) -> None:
    body = {"agent": "codex", "task": "fix it", "model": "gpt-5-codex"}
    assert client.post("/dispatch", json=body, headers=tenant["headers"]).status_code == 202


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            {"agent": "claude", "model": "gpt-5"},
            "model gpt-5 is not allowed for agent claude; it allows claude-sonnet-4-5, claude-opus-4-1, "
            "claude-haiku-4-5",
        ),
        (
            {"agent": "codex", "model": "gpt-5"},
            "model gpt-5 is not allowed for agent codex; it allows gpt-5-codex",
        ),
        (
            {"agent": "grok", "model": "grok-4"},
            "model grok-4 is not allowed for agent grok; no models are configured",
        ),
        ({"agent": "claude", "model": "--help"}, "model: Value error, a model name is"),
        ({"agent": "claude", "model": "a b"}, "model: Value error, a model name is"),
        ({"agent": "claude", "model": ""}, "model: Value error, a model name is"),
        ({"agent": "claude", "model": "x" * 129}, "model: String should have at most 128 characters"),
        ({"agent": "claude", "model": 4}, "model: Input should be a valid string"),
    ],
)
def test_refuse_a_model_the_agent_does_not_allow(
    client: TestClient, tenant: dict[str, Any], body: dict[str, Any], detail: str
) -> None:
    reply = client.post("/dispatch", json={"task": "fix it", **body}, headers=tenant["headers"])
    assert reply.status_code == 422, reply.text
    problem = reply.json()
    assert problem["field"] == "model"
    assert problem["detail"].startswith(detail), problem["detail"]
    assert dispatches(client, tenant) == []


def test_refuse_a_model_the_tenant_does_not_allow(client: TestClient, admin_headers: dict[str, str]) -> None:
    tenant = make_tenant(client, allowed_models=["claude-haiku-4-5", "claude-sonnet-4-5"])
    assert tenant["allowed_models"] == ["claude-haiku-4-5", "claude-sonnet-4-5"]
    body = {"agent": "claude", "task": "fix it", "model": "claude-opus-4-1"}
    reply = client.post("/dispatch", json=body, headers=tenant["headers"])
    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == "model"
    assert reply.json()["detail"] == "model claude-opus-4-1 is not allowed for this tenant"
    assert dispatches(client, tenant) == []
    # the tenant's list narrows the agent's, it never widens it
    body = {"agent": "claude", "task": "fix it", "model": "claude-haiku-4-5"}
    assert client.post("/dispatch", json=body, headers=tenant["headers"]).status_code == 202
    # a dispatch naming no model runs the agent's default: the tenant must allow that one too
    reply = client.post("/dispatch", json={"agent": "claude", "task": "fix it"}, headers=tenant["headers"])
    assert reply.status_code == 202, reply.text  # claude-sonnet-4-5 is on the tenant's list
    reply = client.post("/dispatch", json={"agent": "codex", "task": "fix it"}, headers=tenant["headers"])
    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == "model"
    assert reply.json()["detail"] == (
        "the default model gpt-5-codex of agent codex is not allowed for this tenant; name an allowed one"
    )
    # an agent without a default runs its CLI's own, which no list names
    assert (
        client.post("/dispatch", json={"agent": "grok", "task": "x"}, headers=tenant["headers"]).status_code
        == 202
    )
    # lifting the restriction (null) leaves the agent's list
    reply = client.patch(
        f"/tenants/{tenant['tenant_id']}", json={"allowed_models": None}, headers=admin_headers
    )
    assert reply.status_code == 200 and reply.json()["allowed_models"] is None
    body = {"agent": "claude", "task": "fix it", "model": "claude-opus-4-1"}
    assert client.post("/dispatch", json=body, headers=tenant["headers"]).status_code == 202


def test_tenant_allowed_models_are_checked_names(client: TestClient, admin_headers: dict[str, str]) -> None:
    for bad in (["-x"], ["ok", "a b"], "claude", ["m"] * 51):
        reply = client.post("/tenants", json={"name": "x", "allowed_models": bad}, headers=admin_headers)
        assert reply.status_code == 422, reply.text
        assert reply.json()["field"].startswith("allowed_models")
    tenant = make_tenant(client)
    reply = client.patch(
        f"/tenants/{tenant['tenant_id']}", json={"allowed_models": ["gpt-5", "gpt-5"]}, headers=admin_headers
    )
    assert reply.status_code == 200 and reply.json()["allowed_models"] == ["gpt-5"]


def test_bad_agent_settings_stop_the_control_plane_at_start(
    moto_endpoint: str, shared_resources: Resources
) -> None:
    with pytest.raises(
        ValueError, match="OUTPOST_AGENT_SETTINGS: agent settings: agent 'claude', field 'extra.GH_TOKEN'"
    ):
        settings_for(moto_endpoint, shared_resources, agent_settings={"claude": {"extra": {"GH_TOKEN": "x"}}})


class MissingCli(RecordingTaskControl):
    def agent_unavailable(self, agent: str) -> str | None:
        return None if agent == "shell" else f"agent '{agent}' is not installed on this host"


def test_refuse_an_agent_whose_cli_the_runtime_lacks(client: TestClient, tenant: dict[str, Any]) -> None:
    client.app.state.task_control = MissingCli()  # type: ignore[attr-defined]  # the local runtime's check
    reply = client.post("/dispatch", json={"agent": "claude", "task": "fix it"}, headers=tenant["headers"])
    assert reply.status_code == 409, reply.text
    assert reply.json()["detail"] == "agent 'claude' is not installed on this host"
    assert reply.json()["field"] == "agent"
    assert dispatches(client, tenant) == []
    assert (
        client.post("/dispatch", json={"agent": "shell", "task": "ls"}, headers=tenant["headers"]).status_code
        == 202
    )


def test_outpost_dispatch_sends_the_model(app: Any, client: TestClient, tenant: dict[str, Any]) -> None:
    from typer.testing import CliRunner

    from control_plane.cli import app as cli
    from tests.control_plane.helpers import serving

    runner = CliRunner()
    with serving(app) as (host, port):
        common = ["--url", f"http://{host}:{port}", "--api-key", tenant["api_key"], "--agent", "claude"]
        done = runner.invoke(cli, ["dispatch", *common, "--model", "claude-haiku-4-5", "--json", "fix it"])
        refused = runner.invoke(cli, ["dispatch", *common, "--model", "gpt-5", "fix it"])
    assert done.exit_code == 0, done.output
    # the in-process server's metric lines share the captured output: find the dispatch's JSON
    assert '"model": "claude-haiku-4-5"' in done.output and '"dispatch_id": "d-' in done.output
    assert refused.exit_code == 1  # `outpost` prints it as "error 422: ..." (control_plane/cli.py main)
    assert "422: model gpt-5 is not allowed for agent claude" in str(refused.exception)


def test_a_plain_http_endpoint_is_for_local_mode_only(
    moto_endpoint: str, shared_resources: Resources
) -> None:
    loopback = {"claude": {"base_url": "http://127.0.0.1:8123/anthropic"}}  # a test provider server
    local = settings_for(moto_endpoint, shared_resources, agent_settings=loopback)
    assert local.settings_of("claude").base_url == "http://127.0.0.1:8123/anthropic"
    with pytest.raises(
        ValueError, match=r"field 'base_url': 'http://127.0.0.1:8123/anthropic': must be https://"
    ):
        Settings.model_validate({"env": "prod", "admin_key": "k" * 40, "agent_settings": loopback})
