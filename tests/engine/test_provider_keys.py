"""A dispatch for an agent whose provider key is not there is refused at once (409, naming the
fix), on ECS (the key's Secrets Manager secret has no value) and in local mode (the variable is
not in the environment of `outpost dev`): the engine's app over HTTP against the emulator."""

from __future__ import annotations

import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from control_plane.bootstrap import ensure_resources
from control_plane.engine.app import create_engine_app
from control_plane.engine.config import EngineSettings
from control_plane.runtime.local import LocalRuntime
from control_plane.runtime.provider_keys import SecretKeys, missing_key_variable, secrets_client
from control_plane.settings import Settings
from control_plane.store import Actor
from tests.engine.conftest import ADMIN_KEY, NO_WARM_POOL

REGION = "us-east-1"


@pytest.fixture
def secrets(moto_endpoint: str) -> Any:
    return secrets_client(REGION, moto_endpoint)


def new_secret(secrets: Any, value: str | None = None) -> dict[str, Any]:
    """A secret as the Data stack makes a provider's: without a value unless one is given."""
    extra = {"SecretString": value} if value is not None else {}
    return secrets.create_secret(Name=f"DataSecretsAnthropic-{uuid.uuid4().hex[:12]}", **extra)


def test_a_secret_created_without_a_value_has_nothing_staged_current(secrets: Any) -> None:
    # AWS's rule the check relies on: no value, no version, nothing staged AWSCURRENT (and
    # GetSecretValue, which ECS calls when a task starts, fails)
    created = new_secret(secrets)
    described = secrets.describe_secret(SecretId=created["ARN"])
    assert not any("AWSCURRENT" in labels for labels in described.get("VersionIdsToStages", {}).values())
    with pytest.raises(secrets.exceptions.ResourceNotFoundException):
        secrets.get_secret_value(SecretId=created["ARN"])
    secrets.put_secret_value(SecretId=created["ARN"], SecretString="sk-ant-0123")
    stages = secrets.describe_secret(SecretId=created["ARN"])["VersionIdsToStages"]
    assert [labels for labels in stages.values()] == [["AWSCURRENT"]]


class Counting:
    """The real client, counting DescribeSecret calls."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls = 0

    def describe_secret(self, **params: Any) -> Any:
        self.calls += 1
        return self.client.describe_secret(**params)


def test_answers_are_cached_a_missing_key_briefly(secrets: Any) -> None:
    created = new_secret(secrets)
    now = [0.0]
    client = Counting(secrets)
    keys = SecretKeys(client=client, secrets={"claude": created["ARN"]}, clock=lambda: now[0])
    first = keys.missing("claude")
    assert first is not None and f"secret {created['Name']} has no value" in first
    secrets.put_secret_value(SecretId=created["ARN"], SecretString="sk-ant-0123")
    assert keys.missing("claude") == first and client.calls == 1  # still cached
    now[0] += keys.missing_ttl_s + 1
    assert keys.missing("claude") is None and client.calls == 2
    now[0] += keys.present_ttl_s - 1
    assert keys.missing("claude") is None and client.calls == 2  # a present key, for minutes
    assert keys.missing("shell") is None and keys.missing("codex") is None  # no secret to check


def test_deleted_unknown_and_unreachable_secrets(secrets: Any, moto_endpoint: str) -> None:
    deleted = new_secret(secrets, "sk-ant-0123")
    secrets.delete_secret(SecretId=deleted["ARN"], RecoveryWindowInDays=7)
    unknown = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:DataSecretsGone-abcdef"
    keys = SecretKeys(client=secrets, secrets={"claude": deleted["ARN"], "codex": unknown})
    assert f"aws secretsmanager restore-secret --region {REGION} --secret-id {deleted['Name']}" in (
        keys.missing("claude") or ""
    )
    assert f"secret {unknown} does not exist" in (keys.missing("codex") or "")
    # Secrets Manager cannot be asked: the dispatch goes ahead (the task start is the proof)
    unreachable = SecretKeys(client=secrets_client(REGION, "http://127.0.0.1:9"), secrets={"claude": unknown})
    assert unreachable.missing("claude") is None


def test_missing_key_variable_names_the_variable_and_ignores_keyless_agents() -> None:
    assert missing_key_variable("claude", {"ANTHROPIC_API_KEY": "sk-ant"}) is None
    assert missing_key_variable("shell", {}) is None
    for environment in ({}, {"ANTHROPIC_API_KEY": " "}, {"OPENAI_API_KEY": "sk"}):
        assert missing_key_variable("claude", environment) == (
            "agent 'claude' has no provider key: set ANTHROPIC_API_KEY in the environment of `outpost dev` "
            '(README, "Running the real agents on this host")'
        )
    assert "set GEMINI_API_KEY" in (missing_key_variable("gemini", {}) or "")


def engine_client(moto_endpoint: str, local_runtime: Any = None, **settings: Any) -> TestClient:
    """The engine's app (loops stopped) with queues for shell and claude, and a tenant."""
    resources = ensure_resources(
        endpoint_url=moto_endpoint, prefix=f"k{uuid.uuid4().hex[:10]}", agents=("shell", "claude")
    )
    app = create_engine_app(
        Settings(
            env="local",
            aws_endpoint_url=moto_endpoint,
            admin_key=ADMIN_KEY,
            dispatch_queue_urls=resources.dispatch_queue_urls,
            artifacts_bucket=resources.artifacts_bucket,
            internal_url="http://127.0.0.1:9",
            **resources.tables,
            **settings,
        ),
        engine_settings=EngineSettings(engine_enabled=False, warm_pool=NO_WARM_POOL),
        runtime=local_runtime,  # None: the one the settings name (build_runtime)
    )
    _, api_key = app.state.engine.stores.tenants.create(
        name="keys", max_running=5, max_queued=5, allowed_agents=None, actor=Actor.system("test")
    )
    client = TestClient(app)
    client.headers["Authorization"] = f"Bearer {api_key}"
    return client


def dispatch(client: TestClient, agent: str) -> Any:
    return client.post("/dispatch", json={"agent": agent, "task": "fix the bug"})


def test_ecs_dispatch_is_refused_until_the_key_is_stored(moto_endpoint: str, secrets: Any) -> None:
    created = new_secret(secrets)
    client = engine_client(
        moto_endpoint,
        runtime="ecs",  # no task starts: the engine's loops are stopped
        cluster_arn="arn:aws:ecs:us-east-1:123456789012:cluster/outpost",
        task_definitions={"shell": "outpost-shell", "claude": "outpost-claude"},
        subnets=["subnet-1"],
        agent_security_groups={"shell": "sg-shell", "claude": "sg-claude"},
        agent_secrets={"claude": created["ARN"]},  # as the fleet stack injects it
    )
    keys = client.app.state.engine.runtime.provider_keys  # type: ignore[attr-defined]
    keys.missing_ttl_s = 0  # seconds in the service: here the next dispatch asks again
    refused = dispatch(client, "claude")
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert (problem["type"].rsplit("/", 1)[-1], problem["field"]) == ("agent-unavailable", "agent")
    assert problem["detail"] == (
        f"agent 'claude' cannot run: its provider key's secret {created['Name']} has no value: store the key "
        f"with `aws secretsmanager put-secret-value --region {REGION} --secret-id {created['Name']} "
        '--secret-string "$ANTHROPIC_API_KEY"`'
    )
    assert dispatch(client, "shell").status_code == 202  # needs no key

    secrets.put_secret_value(SecretId=created["ARN"], SecretString="sk-ant-0123")
    accepted = dispatch(client, "claude")
    assert accepted.status_code == 202, accepted.text


@pytest.fixture
def claude_on_path(tmp_path: Path) -> Iterator[str]:
    """A PATH with a stand-in `claude` (the check looks for the CLI first, then the key)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cli = bin_dir / "claude"
    cli.write_text("#!/bin/sh\nexit 0\n")
    cli.chmod(cli.stat().st_mode | stat.S_IXUSR)
    yield f"{bin_dir}:/usr/bin:/bin"


@pytest.mark.parametrize("key", [None, "sk-ant-host-key-0123456789abcdef"])
def test_local_dispatch_needs_the_key_in_the_environment(
    moto_endpoint: str, tmp_path: Path, claude_on_path: str, key: str | None
) -> None:
    host = {"PATH": claude_on_path, **({"ANTHROPIC_API_KEY": key} if key else {})}
    runtime = LocalRuntime(state_dir=tmp_path / "state", host_env=host)
    try:
        reply = dispatch(engine_client(moto_endpoint, runtime), "claude")
    finally:
        runtime.close(stop_tasks=True)
    if key:
        assert reply.status_code == 202, reply.text
    else:
        assert reply.status_code == 409, reply.text
        assert reply.json()["detail"].startswith(
            "agent 'claude' has no provider key: set ANTHROPIC_API_KEY in the environment of `outpost dev`"
        )
