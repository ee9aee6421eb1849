"""Settings read the OUTPOST_* variables of docs/design.md and refuse unsafe defaults outside local."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from control_plane.settings import Settings

STRONG = "s" * 40


def test_settings_read_injected_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTPOST_ENV", "prod")
    monkeypatch.setenv("OUTPOST_ADMIN_KEY", STRONG)
    monkeypatch.setenv("OUTPOST_DISPATCHES_TABLE", "Prod-Data-Dispatches1234")
    monkeypatch.setenv("OUTPOST_DISPATCH_QUEUE_URLS", '{"shell": "https://sqs.eu-west-1.amazonaws.com/1/q"}')
    monkeypatch.setenv("OUTPOST_RUNTIME", "ecs")
    monkeypatch.setenv("OUTPOST_CLUSTER_ARN", "arn:aws:ecs:eu-west-1:1:cluster/outpost")
    monkeypatch.setenv("OUTPOST_TASK_DEFINITIONS", '{"shell": "outpost-shell"}')
    monkeypatch.setenv("OUTPOST_SUBNETS", '["subnet-1", "subnet-2"]')
    monkeypatch.setenv("OUTPOST_AGENT_SECURITY_GROUPS", '{"shell": "sg-0shell"}')
    settings = Settings()
    assert settings.dispatches_table == "Prod-Data-Dispatches1234"
    assert settings.agent_security_groups == {"shell": "sg-0shell"}
    assert settings.dispatch_queue_urls == {"shell": "https://sqs.eu-west-1.amazonaws.com/1/q"}
    assert settings.subnets == ["subnet-1", "subnet-2"]
    assert STRONG not in repr(settings)  # the secret never shows in a log line


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"admin_key": None}, "OUTPOST_ADMIN_KEY"),
        ({"admin_key": "short"}, "OUTPOST_ADMIN_KEY"),
        ({"admin_key": STRONG, "aws_endpoint_url": "http://127.0.0.1:5000"}, "OUTPOST_AWS_ENDPOINT_URL"),
        ({"admin_key": STRONG, "runtime": "ecs"}, "OUTPOST_CLUSTER_ARN"),
    ],
)
def test_settings_refuse_unsafe_defaults_outside_local(overrides: dict, variable: str) -> None:
    with pytest.raises(ValidationError, match=variable):
        Settings(env="dev", **overrides)


ECS = {
    "admin_key": STRONG,
    "runtime": "ecs",
    "cluster_arn": "arn:aws:ecs:eu-west-1:1:cluster/outpost",
    "task_definitions": {"shell": "outpost-shell", "claude": "outpost-claude"},
    "subnets": ["subnet-1"],
}


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        (None, "no security group for claude, shell"),
        ({"shell": "sg-0shell"}, "no security group for claude"),
        (
            {"shell": "sg-0shell", "claude": "sg-0claude", "codex": "sg-0codex"},
            "codex not in OUTPOST_TASK_DEFINITIONS",
        ),
        ({"shell": "sg-0shell", "claude": ""}, r"not a security group id \(sg-...\) for claude"),
    ],
)
def test_every_agent_the_ecs_runtime_launches_needs_its_own_security_group(groups, message) -> None:
    """Refused at start-up: a task without its agent's group would start in the VPC's default
    group, or in another agent's, which reaches that agent's egress proxy listener."""
    overrides = {**ECS, **({"agent_security_groups": groups} if groups is not None else {})}
    with pytest.raises(ValidationError, match=f"OUTPOST_AGENT_SECURITY_GROUPS: {message}"):
        Settings(env="dev", **overrides)
    groups = {"shell": "sg-0shell", "claude": "sg-0claude"}
    assert Settings(env="dev", **ECS, agent_security_groups=groups).agent_security_groups == groups


def test_a_security_group_mapping_that_is_not_json_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTPOST_AGENT_SECURITY_GROUPS", "sg-0shell")  # the old single-group form
    with pytest.raises(SettingsError, match='field "agent_security_groups"'):
        Settings(env="local")


def test_settings_local_mode_generates_admin_key() -> None:
    first, second = Settings(env="local"), Settings(env="local")
    assert len(first.admin_key_value()) >= 32
    assert first.admin_key_value() != second.admin_key_value()
