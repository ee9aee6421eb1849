"""The real gemini CLI (the pinned @google/gemini-cli) through Outpost, against a fake Gemini API.

`outpost dev` (the one all real agents share) runs it as a user would: the agent's settings
name the fake provider as ``base_url`` and the model as ``default_model``. Shipped as it was, the adapter failed here
twice over: headless in a fresh clone (an untrusted folder) the CLI exits 55, and with
``GOOGLE_GEMINI_BASE_URL`` set it picks the "gateway" auth method and exits 41. Every job runs
the production adapter: its settings file, its retry bound, its command line.

The edit runs through `outpost dev` (settings, runner, summary, the dispatch's tokens and
cost); the four provider errors need only the runner's report and run through the runner
alone (tests/agents/real/runner_jobs.py), all at once. One provider serves every job and tells
them apart by the case named in the task.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.agents.real.conftest import GEMINI_MODEL as MODEL
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
from tests.providers.gemini import FakeGemini, Usage
from tests.providers.server import Reply, Request

GREET = 'def greet():\n    return "hello"\n'
ANSWER = "`greet()` now takes a `name` (default `world`) and returns `hello, {name}`."
# Each failure as the provider answers it, and what the job's agent_error then says. The 429
# carries a RetryInfo, as the Gemini API's do.
FAILURES = {
    "401": (
        "API key not valid. Please pass a valid API key.",
        "API error 401 UNAUTHENTICATED: API key not valid",
    ),
    "429": ("Resource has been exhausted (e.g. check quota).", "Resource has been exhausted"),
    "500": ("An internal error has occurred.", "API error 500 INTERNAL: An internal error has occurred."),
    "malformed": ("", "JSON"),
}
CASES = ("edit", *FAILURES)


def task(case: str) -> str:
    return f"Make greet() take a name. (case {case})"


def case_of(request: Request) -> str:
    text = json.dumps(request.json["contents"])
    return next(case for case in CASES if task(case) in text)


def answer(provider: FakeGemini, request: Request) -> Reply:
    """Every chat call of the module's jobs, told apart by the case in the task."""
    case = case_of(request)
    if case == "edit":
        parts = [part for content in request.json["contents"] for part in content.get("parts", [])]
        if not any("functionResponse" in part for part in parts):
            edit = {
                "file_path": "greet.py",
                "instruction": "Give greet() a name parameter.",
                "old_string": GREET,
                "new_string": 'def greet(name: str = "world") -> str:\n    return f"hello, {name}"\n',
            }
            return provider.call("replace", edit, Usage(prompt=9000, cached=6000, candidates=60, thoughts=20))
        return provider.text(ANSWER, Usage(prompt=9400, cached=8000, candidates=30, thoughts=0))
    if case == "malformed":
        return provider.malformed()
    if case == "429":
        return provider.error(429, FAILURES[case][0], retry_delay_s=1)
    return provider.error(int(case), FAILURES[case][0])


@pytest.fixture(scope="module")
def provider(providers: Providers) -> FakeGemini:
    fake = providers.gemini
    fake.script(after=lambda request: answer(fake, request))
    return fake


@pytest.fixture(scope="module")
def edit(provider: FakeGemini, outpost: RealOutpost, egress: Egress) -> Finished:
    egress.script()  # forget earlier tests' requests
    url = outpost.repository("greet-gemini", {"greet.py": GREET})
    return outpost.run("gemini", task("edit"), repo_url=url, timeout_s=300)


@pytest.fixture(scope="module")
def failures(
    provider: FakeGemini, egress: Egress, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    cli("gemini")
    env = {
        "OUTPOST_AGENT_BASE_URL": provider.base_url,
        "OUTPOST_AGENT_MODEL": MODEL,
        "GEMINI_API_KEY": KEYS["GEMINI_API_KEY"],
        **proxied(egress),
    }
    tasks = {case: task(case) for case in FAILURES}
    return run_jobs("gemini", tasks, env=env, root=tmp_path_factory.mktemp("gemini-failures"))


def calls(provider: FakeGemini, case: str) -> list[Request]:
    return [request for request in provider.model_calls if case_of(request) == case]


def test_gemini_edits_repository_and_reports_answer_and_tokens(edit: Finished, provider: FakeGemini) -> None:
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
    # Thinking tokens are billed as output: 60 + 20 + 30.
    assert done.summary["tokens"] == {"input": 18400, "cached_input": 14000, "output": 110}
    assert done.record["tokens"] == {"input": 18400, "cached": 14000, "output": 110}
    # gemini reports no cost: gemini-2.5-pro at 1.25 / 0.125 / 10.00 USD per million tokens.
    assert (done.record["cost_usd"], done.record["cost_source"]) == (0.00835, "gateway")
    # The provider saw the chosen model and the API key; the replace call's result came back.
    first, second = calls(provider, "edit")
    assert first.path.startswith(f"/v1beta/models/{MODEL}:streamGenerateContent")
    assert second.path.startswith(f"/v1beta/models/{MODEL}:streamGenerateContent")
    assert first.header("x-goog-api-key") == KEYS["GEMINI_API_KEY"]
    parts = [part for content in second.json["contents"] for part in content.get("parts", [])]
    assert [part["functionResponse"]["name"] for part in parts if "functionResponse" in part] == ["replace"]
    # Nothing but the model endpoint was asked for, by any job.
    assert {request.path.split(":")[0].rsplit("/", 1)[0] for request in provider.requests} == {
        "/v1beta/models"
    }


@pytest.mark.parametrize("failure", list(FAILURES))
def test_gemini_provider_error_fails_job_with_its_message(
    failures: dict[str, dict[str, Any]], provider: FakeGemini, failure: str
) -> None:
    result = failures[failure]
    expected = FAILURES[failure][1]

    assert result["outcome"] == "FAILED", result
    assert expected in (result["summary"]["agent_error"] or ""), result
    assert expected in result["error"]  # "agent exited with code N: <the CLI's message>"
    assert result["summary"]["patch"]["files_changed"] == 0
    # The production retry bound: general.maxAttempts 2, one retry.
    assert 1 <= len(calls(provider, failure)) <= 2


def test_gemini_jobs_call_nothing_but_the_model_endpoint(
    edit: Finished, failures: dict[str, dict[str, Any]], egress: Egress
) -> None:
    # Left to its defaults the CLI calls play.googleapis.com (usage statistics) through this proxy.
    assert egress.requests == [], [(request.method, request.path) for request in egress.requests]
