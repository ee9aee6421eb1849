"""The five real agents with an agent task's proxy variables, behind a real egress proxy.

On AWS every agent task carries HTTPS_PROXY (its listener of the egress proxy) and NO_PROXY
(the VPC's internal domain and S3), as stacks/egress.py's ``proxy_environment`` writes them
into the task definitions. The model gateway is plain HTTP inside the VPC, so the agents'
model calls must not go to the proxy. Here each pinned CLI runs one edit job under `outpost
dev` (the local runtime, which passes the host's proxy variables to its tasks) with exactly
those variables, HTTPS_PROXY pointing at ``python -m control_plane.egress_proxy`` on loopback,
and each job must complete through the model gateway with the agent's answer, the change and
the real key on the provider's side (only the gateway holds it). A shell job beside them shows
the variables reach a job's processes: its HTTPS request goes to the proxy, which refuses it.

Without the runner adding the gateway's host to NO_PROXY, Claude Code sent its calls to the
loopback gateway to the proxy as plain HTTP, and Gemini CLI tunnelled them (CONNECT): both jobs
failed. On AWS Claude Code takes "outpost.internal" to cover the gateway's name, Gemini CLI
does not (agents/runner/model_access.py).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agents.egress import PROXY_VARIABLES
from agents.registry import AGENTS as REGISTRY
from agents.registry import PROVIDER_KEY_ENV
from control_plane.runtime.container_spec import ENVIRONMENTS_KEY
from stacks.egress import proxy_environment
from stacks.fleet import NAMESPACE
from tests.agents.real import test_aider, test_claude, test_codex, test_gemini, test_grok
from tests.agents.real.conftest import (
    CLAUDE_MODEL,
    KEYS,
    Finished,
    Providers,
    RealOutpost,
    agent_settings,
    by_marker,
    calls_of,
    cli,
    in_order,
    real_outpost,
)
from tests.egress_proxy_process import running_proxy
from tests.providers.server import FakeProvider

ROOT = Path(__file__).resolve().parents[3]
AGENTS = ("claude", "codex", "gemini", "aider", "grok")
MODULES = {
    "claude": test_claude,
    "codex": test_codex,
    "gemini": test_gemini,
    "aider": test_aider,
    "grok": test_grok,
}
GREET = 'def greet():\n    return "hello"\n'
# The shell job: the proxy variables it was given, then an HTTPS request by a client that honours
# them (Python's urllib) to a host not on the listener's allowlist.
PROBE = (
    "env | grep -i _proxy= | sort; "
    "python3 -c \"import urllib.request; urllib.request.urlopen('https://pypi.org/simple/', timeout=10)\" "
    "2>&1 | tail -1; true"
)
MARKER = "caseproxied"  # tells this module's jobs apart at the providers shared with the others
DEV_REGION = json.loads((ROOT / "cdk.json").read_text())["context"][ENVIRONMENTS_KEY]["dev"]["region"]


@dataclass
class RunningProxy:
    url: str
    log: Path


@pytest.fixture(scope="module")
def egress_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProxy]:
    """The egress proxy as its service runs it, on a loopback port it picks, with one listener
    (one `outpost dev` serves all five agents, where AWS gives each agent its own) whose
    allowlist is empty: whatever a CLI asks for through it is refused, and logged."""
    log = tmp_path_factory.mktemp("egress-proxy") / "egress-proxy.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OUTPOST_")},
        "OUTPOST_EGRESS_PROXY_LISTENERS": json.dumps({"0": {"agent": "outpost-dev", "hosts": []}}),
        "OUTPOST_EGRESS_PROXY_DENIED_NETWORKS": json.dumps(["10.0.0.0/16"]),
        "OUTPOST_EGRESS_PROXY_HOST": "127.0.0.1",
    }
    argv = [sys.executable, "-m", "control_plane.egress_proxy"]
    with running_proxy(argv, env=env, log=log, cwd=ROOT) as listeners:  # SIGTERM: exit 0
        yield RunningProxy(f"http://127.0.0.1:{listeners['outpost-dev']}", log)


@pytest.fixture(scope="module")
def proxied(
    providers: Providers, egress_proxy: RunningProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealOutpost]:
    """`outpost dev` whose tasks get the agent task's proxy variables, exactly as the task
    definitions have them but for the proxy's address. NO_PROXY gains nothing for the gateway:
    on AWS the gateway is http://control-plane.outpost.internal/gateway, here it is on
    127.0.0.1, and either way the runner adds the gateway's own host (agents/runner/
    model_access.py), since Gemini CLI and Claude Code match "outpost.internal" differently."""
    for name in AGENTS:
        cli(name)
    variables = proxy_environment(egress_proxy.url, region=DEV_REGION, internal_domain=NAMESPACE)
    assert set(variables) == set(PROXY_VARIABLES)  # the task definitions' four, no HTTP_PROXY
    root = tmp_path_factory.mktemp("behind-egress-proxy")
    with real_outpost(root, agent_settings=agent_settings(providers), env=variables) as instance:
        yield instance


@pytest.fixture(scope="module")
def jobs(providers: Providers, proxied: RealOutpost) -> dict[str, Finished]:
    chat = {"claude": providers.anthropic, "aider": providers.aider, "grok": providers.grok}
    for agent in chat:
        turns = MODULES[agent].edit_turns(chat[agent])  # type: ignore[attr-defined]
        chat[agent].script(after=by_marker({MARKER: in_order(*turns)}))
    providers.codex.script(after=lambda request: test_codex.answer(providers.codex, request))
    providers.gemini.script(after=lambda request: test_gemini.answer(providers.gemini, request))
    tasks = {
        **{agent: f"Give greet() a name parameter ({MARKER})." for agent in chat},
        # codex's and gemini's scripted answers go by their own module's task text
        "codex": f"{test_codex.task('edit')} ({MARKER})",
        "gemini": f"{test_gemini.task('edit')} ({MARKER})",
    }
    started = {
        agent: proxied.start(
            agent,
            tasks[agent],
            repo_url=proxied.repository(f"{agent}-behind-proxy", {"greet.py": GREET}),
            timeout_s=300,
            **({"model": CLAUDE_MODEL} if agent == "claude" else {}),
        )
        for agent in AGENTS
    }
    started["shell"] = proxied.start(
        "shell", PROBE, repo_url=proxied.repository("shell-behind-proxy", {"a": ""})
    )
    return {agent: proxied.finish(dispatch_id, timeout_s=300) for agent, dispatch_id in started.items()}


def provider_of(providers: Providers, agent: str) -> FakeProvider:
    return {
        "claude": providers.anthropic,
        "codex": providers.codex,
        "gemini": providers.gemini,
        "aider": providers.aider,
        "grok": providers.grok,
    }[agent]


@pytest.mark.parametrize("agent", AGENTS)
def test_the_agent_completes_through_the_gateway_with_the_task_proxy_variables(
    agent: str, providers: Providers, jobs: dict[str, Finished]
):
    done = jobs[agent]

    assert done.record["status"] == "COMPLETED", (done.record, done.transcript[-3000:])
    assert done.changed_files == ["greet.py"], done.patch[:2000]
    assert "+def greet(name: str = " in done.patch
    assert done.summary["final_message"] == MODULES[agent].ANSWER  # type: ignore[attr-defined]
    assert done.summary["agent_error"] is None
    # The gateway counted the job's model calls, and they reached the provider with the real
    # key, which only the gateway holds: the agent's calls went to the gateway, not the proxy.
    assert done.record["tokens"]["input"] > 0, done.record
    calls = calls_of(provider_of(providers, agent), MARKER)
    assert calls, f"{agent}: no model call of this job reached its provider"
    key = KEYS[PROVIDER_KEY_ENV[REGISTRY[agent].secret]]
    assert all(any(key in value for value in call.headers.values()) for call in calls), agent


def test_a_jobs_https_goes_to_the_egress_proxy(egress_proxy: RunningProxy, jobs: dict[str, Finished]):
    """The control: the job had the task's variables, and its HTTPS went to the proxy."""
    done = jobs["shell"]

    assert done.record["status"] == "COMPLETED", (done.record, done.transcript[-3000:])
    for name in PROXY_VARIABLES:
        assert re.search(rf"^{name}=", done.transcript, re.MULTILINE), done.transcript
    assert f"HTTPS_PROXY={egress_proxy.url}\n" in done.transcript
    assert "Tunnel connection failed: 403 Forbidden" in done.transcript, done.transcript
    assert "refused agent=outpost-dev target=pypi.org:443: pypi.org is not on" in egress_proxy.log.read_text()


def test_no_model_call_went_to_the_egress_proxy(
    proxied: RealOutpost, egress_proxy: RunningProxy, jobs: dict[str, Finished]
):
    """The proxy logs every request it refuses or tunnels, with its target: none is the
    gateway's (a gateway call sent to it would be refused, and its job fail)."""
    gateway = proxied.dev.url.removeprefix("http://")  # host:port
    logged = egress_proxy.log.read_text()
    asked = re.findall(r"(?:refused|tunnel) agent=outpost-dev target=(\S+?):? ", logged)
    assert "pypi.org:443" in asked, logged  # the shell job's
    assert [target for target in asked if gateway in target or "/gateway" in target] == [], logged
