"""The real codex CLI (the pinned @openai/codex) through Outpost, against a fake Responses API.

`outpost dev` (the one all real agents share) runs it as a user would: the agent's settings
name the fake provider as ``base_url`` and the model as ``default_model``; the adapter turns
them into codex's ``model_providers`` entry. Every job runs the production adapter: its retry
bounds, its config.toml, its command line.

The edit runs through `outpost dev` (settings, runner, summary, the dispatch's tokens and
cost); the four provider errors need only the runner's report and run through the runner
alone (tests/agents/real/runner_jobs.py), all at once. One provider serves every job and tells
them apart by the case named in the task.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.agents.real.conftest import CODEX_MODEL as MODEL
from tests.agents.real.conftest import (
    KEYS,
    Egress,
    Finished,
    Providers,
    RealOutpost,
    changed_lines,
    cli,
    proxied,
)
from tests.agents.real.runner_jobs import run_jobs
from tests.providers.openai_responses import FakeResponses, Usage
from tests.providers.server import Reply, Request

GREET = 'def greet():\n    return "hello"\n'
PATCH = """*** Begin Patch
*** Update File: greet.py
@@
-def greet():
-    return "hello"
+def greet(name: str = "world") -> str:
+    return f"hello, {name}"
*** End Patch
"""
ANSWER = "`greet()` now takes a `name` (default `world`) and returns `hello, {name}`."
# Each failure as the provider answers it, and what the job's agent_error then says (codex's
# own words: for a 5xx it prints a fixed sentence, for a 429 the status).
FAILURES = {
    "401": ("Incorrect API key provided: test-ope****cdef.", "unexpected status 401 Unauthorized"),
    "429": ("Rate limit reached for gpt-5.5 on tokens per min.", "last status: 429 Too Many Requests"),
    "500": ("The server had an error while processing your request.", "experiencing high demand"),
    "malformed": ("", "stream disconnected before completion"),
}
CASES = ("edit", *FAILURES)


def task(case: str) -> str:
    return f"Make greet() take a name. (case {case})"


def case_of(request: Request) -> str:
    text = json.dumps(request.json["input"])
    return next(case for case in CASES if task(case) in text)


def answer(provider: FakeResponses, request: Request) -> Reply:
    """Every model call of the module's jobs, told apart by the case in the task."""
    case = case_of(request)
    if case == "edit":
        done = {item.get("type") for item in request.json["input"]}
        if "function_call_output" not in done:  # first look at the file, with codex's shell tool
            return provider.shell("cat greet.py", Usage(input_tokens=1000, cached_tokens=0, output_tokens=20))
        if "custom_tool_call_output" not in done:
            usage = Usage(
                input_tokens=1200,
                cached_tokens=1000,
                cache_write_tokens=150,
                output_tokens=40,
                reasoning_tokens=12,
            )
            return provider.apply_patch(PATCH, usage)
        return provider.message(ANSWER, Usage(input_tokens=1500, cached_tokens=1200, output_tokens=25))
    if case == "malformed":
        return provider.malformed()
    return provider.error(int(case), FAILURES[case][0])


@pytest.fixture(scope="module")
def provider(providers: Providers) -> FakeResponses:
    fake = providers.codex
    fake.script(after=lambda request: answer(fake, request))
    return fake


@pytest.fixture(scope="module")
def edit(provider: FakeResponses, outpost: RealOutpost, egress: Egress) -> Finished:
    egress.script()  # forget earlier tests' requests
    url = outpost.repository("greet-codex", {"greet.py": GREET})
    return outpost.run("codex", task("edit"), repo_url=url, timeout_s=300)


@pytest.fixture(scope="module")
def failures(
    provider: FakeResponses, egress: Egress, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    cli("codex")
    env = {
        "OUTPOST_AGENT_BASE_URL": provider.base_url,
        "OUTPOST_AGENT_MODEL": MODEL,
        "OPENAI_API_KEY": KEYS["OPENAI_API_KEY"],
        **proxied(egress),
    }
    tasks = {case: task(case) for case in FAILURES}
    return run_jobs("codex", tasks, env=env, root=tmp_path_factory.mktemp("codex-failures"))


def calls(provider: FakeResponses, case: str) -> list[Request]:
    return [request for request in provider.model_calls if case_of(request) == case]


def test_codex_edits_repository_and_reports_answer_and_tokens(
    edit: Finished, provider: FakeResponses
) -> None:
    done = edit

    assert done.record["status"] == "COMPLETED", (done.record, done.transcript[-3000:])
    assert done.changed_files == ["greet.py"]
    assert changed_lines(done.patch) == [
        "-def greet():",
        '-    return "hello"',
        '+def greet(name: str = "world") -> str:',
        '+    return f"hello, {name}"',
    ]
    assert done.summary["final_message"] == ANSWER
    assert done.summary["agent_error"] is None
    # Cache writes are part of input_tokens: counted once.
    assert done.summary["tokens"] == {"input": 3700, "cached_input": 2200, "output": 85}
    assert done.record["tokens"] == {"input": 3700, "cached": 2200, "output": 85}
    # codex reports no cost: gpt-5.5 at 5.00 / 0.50 / 30.00 USD per million tokens.
    assert (done.record["cost_usd"], done.record["cost_source"]) == (0.01115, "gateway")
    # The provider saw the chosen model and the key under codex's provider entry; the shell
    # command ran in the job's checkout (its output came back) and codex applied the patch.
    first, second, third = calls(provider, "edit")
    assert {call.json["model"] for call in (first, second, third)} == {MODEL}
    assert first.header("Authorization") == f"Bearer {KEYS['OPENAI_API_KEY']}"
    shell = [item for item in second.json["input"] if item.get("type") == "function_call_output"]
    assert [item["call_id"] for item in shell] == ["call_shell"]
    assert "Process exited with code 0" in shell[0]["output"]
    assert 'return "hello"' in shell[0]["output"]
    patched = [item for item in third.json["input"] if item.get("type") == "custom_tool_call_output"]
    assert [item["call_id"] for item in patched] == ["call_patch"]
    # Nothing but the model endpoint was asked for, by any job.
    assert {request.path.split("?")[0] for request in provider.requests} == {"/v1/responses"}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_codex_provider_error_fails_job_with_its_message(
    failures: dict[str, dict[str, Any]], provider: FakeResponses, failure: str
) -> None:
    result = failures[failure]
    expected = FAILURES[failure][1]

    assert result["outcome"] == "FAILED", result
    assert expected in (result["summary"]["agent_error"] or ""), result
    assert expected in result["error"]  # "agent exited with code N: <the CLI's message>"
    assert result["summary"]["patch"]["files_changed"] == 0
    assert result["summary"]["tokens"] == {"input": None, "cached_input": None, "output": None}
    # The production retry bounds: one retry of a request and one of the stream, the turn
    # tried twice: at most 2 * 2 * 2 requests.
    assert 1 <= len(calls(provider, failure)) <= 8


def test_codex_jobs_call_nothing_but_the_model_endpoint(
    edit: Finished, failures: dict[str, dict[str, Any]], egress: Egress
) -> None:
    # Left to its defaults the CLI calls github.com, api.github.com, chatgpt.com and ab.chatgpt.com through this proxy.
    assert egress.requests == [], [(request.method, request.path) for request in egress.requests]
