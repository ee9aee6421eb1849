"""The five real agents in their own images, through `outpost dev --runtime container`.

Each agent's pinned CLI runs in the image `make images` builds (tests/images/building.py,
once per session), under the Dev stage's task definition as the container runtime enforces it: uid
10001, no capabilities, a read-only root file system, the workspace and scratch volumes. The
runner in the image clones a file:// repository from the directory that `--allow-local-repos`
mounts read-only into every container; the agent calls its fake provider on loopback through
local mode's agent settings (http, which a deployed stage refuses). The five jobs run at once,
and each must COMPLETE with exactly the intended change, the agent's answer and its usage.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.runtime.container_spec import synthesize
from tests.agents.real import test_aider, test_claude, test_codex, test_gemini, test_grok
from tests.agents.real.conftest import (
    AIDER_MODEL,
    CLAUDE_MODEL,
    CODEX_MODEL,
    GEMINI_MODEL,
    KEYS,
    Finished,
    Providers,
    RealOutpost,
    agent_settings,
    by_marker,
    calls_of,
    in_order,
    real_outpost,
)
from tests.images.building import TEST_TAG as TAG  # the images, built once per session

ROOT = Path(__file__).resolve().parents[3]
AGENTS = ("claude", "codex", "gemini", "aider", "grok")
GREET = 'def greet():\n    return "hello"\n'
MARKER = "caseimage"  # tells this module's jobs apart at the providers shared with the others
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


@pytest.fixture(scope="module")
def boxed(
    providers: Providers, built: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealOutpost]:
    root = tmp_path_factory.mktemp("agents-in-images")
    cdk_out = synthesize(root / "cdk.out")  # the Dev stage's task definitions, as `cdk synth` makes them
    with real_outpost(
        root,
        agent_settings=agent_settings(providers),
        env={"OUTPOST_CONTAINER_IMAGE_TAG": TAG},
        args=("--runtime", "container", "--cdk-out", str(cdk_out)),
    ) as instance:
        yield instance


@pytest.fixture(scope="module")
def jobs(providers: Providers, boxed: RealOutpost) -> dict[str, Finished]:
    chat = {"claude": providers.anthropic, "aider": providers.aider, "grok": providers.grok}
    for agent, turns in (
        ("claude", test_claude.edit_turns),
        ("aider", test_aider.edit_turns),
        ("grok", test_grok.edit_turns),
    ):
        chat[agent].script(after=by_marker({MARKER: in_order(*turns(chat[agent]))}))  # type: ignore[arg-type]
    providers.codex.script(after=lambda request: test_codex.answer(providers.codex, request))
    providers.gemini.script(after=lambda request: test_gemini.answer(providers.gemini, request))
    tasks = {
        "claude": f"Give greet() a name parameter ({MARKER}).",
        "aider": f"Give greet() a name parameter ({MARKER}).",
        "grok": f"Give greet() a name parameter ({MARKER}).",
        "codex": test_codex.task("edit"),
        "gemini": test_gemini.task("edit"),
    }
    started = {
        agent: boxed.start(
            agent,
            tasks[agent],
            repo_url=boxed.repository(f"{agent}-in-image", {"greet.py": GREET}),
            timeout_s=300,
            **({"model": CLAUDE_MODEL} if agent == "claude" else {}),
        )
        for agent in AGENTS
    }
    return {agent: boxed.finish(dispatch_id, timeout_s=300) for agent, dispatch_id in started.items()}


@pytest.mark.parametrize("agent", AGENTS)
def test_the_agent_completes_in_its_image_with_exactly_the_change(agent: str, jobs: dict[str, Finished]):
    done = jobs[agent]

    assert done.record["status"] == "COMPLETED", (done.record, done.transcript[-3000:])
    assert done.changed_files == ["greet.py"], done.patch[:2000]
    assert "+def greet(name: str = " in done.patch
    module = {"claude": test_claude, "codex": test_codex, "gemini": test_gemini, "aider": test_aider}
    assert done.summary["final_message"] == module.get(agent, test_grok).ANSWER
    assert done.summary["agent_error"] is None


def test_usage_and_models_are_those_of_the_local_runs(providers: Providers, jobs: dict[str, Finished]):
    """The same CLIs, the same answers: the images report what the host's CLIs report."""
    tokens = {agent: jobs[agent].record["tokens"] for agent in AGENTS}
    assert tokens == {
        "claude": {"input": 3880, "cached": 2500, "output": 100},
        "codex": {"input": 3700, "cached": 2200, "output": 85},
        "gemini": {"input": 18400, "cached": 14000, "output": 110},
        "aider": {"input": 2800, "cached": 0, "output": 140},
        "grok": {"input": 3000, "cached": 0, "output": 72},  # the gateway's count: grok prints none
    }
    claude = calls_of(providers.anthropic, MARKER)
    assert [r.json["model"] for r in claude] == [CLAUDE_MODEL] * 3
    # the model gateway added the real key; the container held only its gateway token
    assert {r.header("x-api-key") for r in claude} == {KEYS["ANTHROPIC_API_KEY"]}
    assert {r.json["model"] for r in calls_of(providers.aider, MARKER)} == {
        AIDER_MODEL.removeprefix("openai/")
    }
    assert {r.json["model"] for r in calls_of(providers.codex, test_codex.task("edit"))} == {CODEX_MODEL}
    assert all(GEMINI_MODEL in r.path for r in calls_of(providers.gemini, test_gemini.task("edit")))


def test_the_agent_ran_in_the_container_workspace(providers: Providers, jobs: dict[str, Finished]):
    """Claude Code names its working directory to the model: the task's /workspace volume in the
    container, not a directory of the host."""
    (first, *_) = calls_of(providers.anthropic, MARKER)
    assert test_claude.workdir(first).startswith("/workspace/"), test_claude.workdir(first)


def test_no_provider_key_reaches_a_container(providers: Providers, jobs: dict[str, Finished]):
    """Each agent called its provider through the model gateway with its dispatch's token; the
    real keys, which the providers did receive, appear nowhere the job left a trace."""
    assert {r.header("x-api-key") for r in calls_of(providers.anthropic, MARKER)} == {
        KEYS["ANTHROPIC_API_KEY"]
    }
    for agent, done in jobs.items():
        traces = done.transcript + done.patch + json.dumps(done.summary) + json.dumps(done.record)
        leaked = [name for name, key in KEYS.items() if key in traces]
        assert leaked == [], f"{agent}: {leaked}"
