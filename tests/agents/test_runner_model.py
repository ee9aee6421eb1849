"""The agent's model and endpoint reach the agent: the task's settings, the dispatch's model first."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.agent_settings import BASE_URL_ENV, MODEL_ENV
from agents.runner.protocol import Job
from tests.agents.runner_harness import CLAIM_TOKEN, FakeControlPlane, make_job, run_runner, runner_env

# What the claude task definition carries when the operator set its settings (tests/infra).
TASK_SETTINGS = {
    MODEL_ENV: "claude-sonnet-4-5",
    BASE_URL_ENV: "https://gateway.example.com/anthropic",
    "DISABLE_TELEMETRY": "1",
}


def agent_environment(plane: FakeControlPlane, workspace: Path, tmp_path: Path, job: dict) -> dict[str, str]:
    env_file = tmp_path / "agent.env"
    plane.job = {**job, "task": f"env > {env_file}"}
    done = run_runner(runner_env(plane, workspace, **TASK_SETTINGS))
    assert done.returncode == 0, done.stderr
    assert plane.result["outcome"] == "COMPLETED", plane.result
    return dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)


def test_dispatch_model_replaces_the_default(
    plane: FakeControlPlane, workspace: Path, tmp_path: Path
) -> None:
    seen = agent_environment(plane, workspace, tmp_path, {**make_job(""), "model": "claude-opus-4-1"})
    assert seen[MODEL_ENV] == "claude-opus-4-1"
    assert seen[BASE_URL_ENV] == TASK_SETTINGS[BASE_URL_ENV]
    assert seen["DISABLE_TELEMETRY"] == "1"
    # the settings are the only Outpost variables the agent sees
    assert sorted(n for n in seen if n.startswith("OUTPOST_")) == [BASE_URL_ENV, MODEL_ENV]
    assert CLAIM_TOKEN not in "".join(seen.values())


def test_no_dispatch_model_keeps_the_default(
    plane: FakeControlPlane, workspace: Path, tmp_path: Path
) -> None:
    seen = agent_environment(plane, workspace, tmp_path, {**make_job(""), "model": None})
    assert seen[MODEL_ENV] == TASK_SETTINGS[MODEL_ENV]


@pytest.mark.parametrize("model", [7, "", "-c", "a b", "x" * 200])
def test_claim_answer_with_a_bad_model_is_refused(model: object) -> None:
    with pytest.raises(ValueError, match="model"):
        Job.from_claim({**make_job("true"), "model": model})
