"""What a local task's agent sees of the host: the allowlist and its settings; of its provider,
only its dispatch's gateway token (the gateway holds the key, docs/model-gateway.md).

Real processes: the local runtime starts the real runner, which claims its job from a control
plane on loopback (tests/agents/runner_harness.py) and runs the agent, here a CLI stand-in that
writes its environment to a file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.agent_settings import BASE_URL_ENV, MODEL_ENV, AgentSettings
from control_plane.runtime.base import LaunchedTask, LaunchRequest
from control_plane.runtime.local import HOST_ALLOWLIST, LocalRuntime
from tests.agents.runner_harness import CLAIM_TOKEN, FakeControlPlane, make_job

HOST_SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-host-key-0123456789abcdef",
    "OPENAI_API_KEY": "sk-host-openai-0123456789abcdef",
    "GITHUB_TOKEN": "ghp_hostgithubtoken0123456789",
    "AWS_SECRET_ACCESS_KEY": "host-aws-secret-0123456789",
    "HOST_ONLY_MARKER": "the-host-environment-leaked",
}
HOST_ALLOWED = {
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TZ": "Europe/Paris",
    "NO_PROXY": "127.0.0.1,localhost",
}
SETTINGS = AgentSettings(
    default_model="claude-sonnet-4-5",
    allowed_models=("claude-sonnet-4-5", "claude-opus-4-1"),
    base_url="https://gateway.example.com/anthropic",
    extra={"DISABLE_TELEMETRY": "1"},
)


@pytest.fixture
def plane() -> Iterator[FakeControlPlane]:
    control_plane = FakeControlPlane(job=None)
    control_plane.start()
    yield control_plane
    control_plane.stop()


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A `claude` that writes its environment where the job's task says (its last argument
    holds the prompt; the stand-in ignores everything else)."""
    path = tmp_path / "bin"
    path.mkdir()
    cli = path / "claude"
    cli.write_text(f'#!/bin/sh\nenv > "{tmp_path}/agent.env"\n')
    cli.chmod(cli.stat().st_mode | stat.S_IXUSR)
    return path


def run_one(
    tmp_path: Path, plane: FakeControlPlane, agent: str, host: dict[str, str], job: dict
) -> dict[str, str]:
    plane.job = job
    runtime = LocalRuntime(
        state_dir=tmp_path / "state",
        control_plane_url=plane.url,
        extra_env={"OUTPOST_IDLE_TIMEOUT_S": "20", "OUTPOST_KILL_GRACE_S": "1"},
        agent_settings={"claude": SETTINGS, "shell": SETTINGS},
        host_env=host,
    )
    try:
        (launched,) = runtime.launch(
            [
                LaunchRequest(
                    agent=agent,
                    task_id="t-env",
                    client_token="t-env",
                    env={"OUTPOST_CLAIM_TOKEN": CLAIM_TOKEN},
                )
            ]
        )
        assert isinstance(launched, LaunchedTask), launched
        assert plane.result_received.wait(60), (tmp_path / "state" / "logs" / "t-env.log").read_text()
    finally:
        runtime.close(stop_tasks=True)
    lines = (tmp_path / "agent.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_host_variables_off_the_allowlist_do_not_reach_the_agent(
    tmp_path: Path, plane: FakeControlPlane
) -> None:
    host = {**os.environ, **HOST_SECRETS, **HOST_ALLOWED}
    seen = run_one(tmp_path, plane, "shell", host, make_job(f"env > {tmp_path}/agent.env"))
    assert plane.result["outcome"] == "COMPLETED", plane.result
    for name in HOST_SECRETS:  # the shell agent has no provider: no key at all
        assert name not in seen
    assert not set(HOST_SECRETS.values()) & set(seen.values())
    for name, value in HOST_ALLOWED.items():
        assert seen[name] == value
    assert seen["PATH"] == host["PATH"]
    assert seen["HOME"] != host.get("HOME") and seen["HOME"].startswith(str(tmp_path / "state"))
    assert (seen[MODEL_ENV], seen[BASE_URL_ENV], seen["DISABLE_TELEMETRY"]) == (
        "claude-sonnet-4-5",
        "https://gateway.example.com/anthropic",
        "1",
    )
    # everything else comes from the runner (git settings, TMPDIR), none of it from the host
    from_host = {n for n in seen if n in host and seen[n] == host[n]}
    assert {n for n in from_host if n not in HOST_ALLOWLIST and not n.startswith("LC_")} == set()


def test_an_agent_gets_its_gateway_token_and_never_a_provider_key(
    tmp_path: Path, plane: FakeControlPlane, bin_dir: Path
) -> None:
    host = {**HOST_SECRETS, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    gateway = {"gateway_token": "t-env.gateway-token-0123456789", "gateway_url": f"{plane.url}/gateway"}
    job = {**make_job("fix the bug", agent="claude"), "model": "claude-opus-4-1", **gateway}
    seen = run_one(tmp_path, plane, "claude", host, job)
    # the key the CLI reads holds the gateway token; the model calls go to the gateway
    assert seen["ANTHROPIC_API_KEY"] == gateway["gateway_token"]
    assert seen[BASE_URL_ENV] == seen["ANTHROPIC_BASE_URL"] == f"{plane.url}/gateway/anthropic"
    assert not set(HOST_SECRETS.values()) & set(seen.values())  # no host key, the agent's own neither
    for name in ("OPENAI_API_KEY", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "HOST_ONLY_MARKER"):
        assert name not in seen
    assert seen[MODEL_ENV] == "claude-opus-4-1"  # the dispatch's model over the default


def test_dispatch_is_told_when_the_agent_cli_is_not_on_path(tmp_path: Path, bin_dir: Path) -> None:
    def runtime(path: str, **keys: str) -> LocalRuntime:
        return LocalRuntime(state_dir=tmp_path / "state", host_env={"PATH": path, **keys})

    missing = runtime("/usr/bin:/bin")
    try:
        assert missing.agent_unavailable("claude") == (
            "agent 'claude' is not installed on this host: put `claude` on PATH "
            '(README, "Running the real agents on this host"), or use --runtime container'
        )
        assert missing.agent_unavailable("codex") is not None
        assert missing.agent_unavailable("shell") is None  # sh is on every PATH
    finally:
        missing.close()
    found = runtime(f"{bin_dir}:/usr/bin:/bin", ANTHROPIC_API_KEY=HOST_SECRETS["ANTHROPIC_API_KEY"])
    try:
        assert found.agent_unavailable("claude") is None
    finally:
        found.close()
    keyless = runtime(f"{bin_dir}:/usr/bin:/bin")  # the CLI is there, its key is not
    try:
        assert (keyless.agent_unavailable("claude") or "").startswith(
            "agent 'claude' has no provider key: set ANTHROPIC_API_KEY"
        )
    finally:
        keyless.close()
