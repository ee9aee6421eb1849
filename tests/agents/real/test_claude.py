"""Claude Code 2.1.331 (the pinned CLI) through Outpost against a fake Anthropic Messages API.

The module's five jobs run at once, each told apart by a marker in its task: one reads and
edits a file through Claude Code's own Read and Edit tools, four meet a provider error.
The machine runs the tests as root: Claude Code refuses ``--dangerously-skip-permissions``
there unless the adapter says the machine is a sandbox (IS_SANDBOX=1, for a root runner only).
"""

from __future__ import annotations

import re

import httpx
import pytest

from tests.agents.real.conftest import (
    CLAUDE_MODEL,
    CLAUDE_RETRIES,
    KEYS,
    Egress,
    Finished,
    Providers,
    RealOutpost,
    by_marker,
    calls_of,
    in_order,
)
from tests.e2e.helpers import TERMINAL, wait_for
from tests.providers.anthropic import FakeAnthropic, Usage
from tests.providers.server import Reply, Request, Step

GREET = 'def greet():\n    return "hello"\n'
ANSWER = "I changed greet() to take a name; it returns a greeting with it."
TURNS = [Usage(40, 1200, 0, 30), Usage(60, 0, 1200, 45), Usage(80, 0, 1300, 25)]
ERRORS = {
    # marker in the task -> (the provider's answer, what agent_error must say)
    "case401": (lambda fake: fake.error(401, "invalid x-api-key"), "Invalid API key"),
    "case429": (lambda fake: fake.error(429, "Number of request tokens has exceeded your rate limit"), "429"),
    "case500": (lambda fake: fake.error(500, "upstream exploded"), "500"),
    "casebroken": (lambda fake: fake.malformed(), "API"),
}


def workdir(request: Request) -> str:
    """The checkout, as Claude Code tells the model in its system prompt."""
    found = re.search(r"[Ww]orking directory: (/[^\s\"\\]+)", request.body.decode())
    assert found, "Claude Code no longer names its working directory in the request"
    return found.group(1)


def edit_turns(fake: FakeAnthropic) -> list[Step]:
    """Claude Code's three model calls of the edit: Read the file, Edit it, answer."""

    def read(request: Request) -> Reply:
        return fake.tool_use("Read", {"file_path": f"{workdir(request)}/greet.py"}, TURNS[0], "toolu_read")

    def edit(request: Request) -> Reply:
        change = {
            "file_path": f"{workdir(request)}/greet.py",
            "old_string": 'def greet():\n    return "hello"',
            "new_string": 'def greet(name: str = "world"):\n    return f"hello, {name}"',
        }
        return fake.tool_use("Edit", change, TURNS[1], "toolu_edit")

    return [read, edit, fake.text(ANSWER, TURNS[2])]


@pytest.fixture(scope="module")
def jobs(providers: Providers, outpost: RealOutpost, egress: Egress) -> dict[str, Finished]:
    fake = providers.anthropic
    egress.script()  # forget earlier modules' requests
    answers = {
        "caseedit": in_order(*edit_turns(fake)),
        **{m: answer(fake) for m, (answer, _) in ERRORS.items()},
    }
    fake.script(after=by_marker(answers))
    repo = outpost.repository("claude", {"greet.py": GREET})
    started = {
        marker: outpost.start(
            "claude",
            f"Give greet() a name parameter ({marker}).",
            repo_url=repo,
            **({"model": CLAUDE_MODEL} if marker == "caseedit" else {}),
        )
        for marker in ["caseedit", *ERRORS]
    }
    return {marker: outpost.finish(dispatch_id) for marker, dispatch_id in started.items()}


def test_claude_edits_a_file_and_completes_with_tokens_and_cost(
    providers: Providers, jobs: dict[str, Finished], egress: Egress
):
    done = jobs["caseedit"]

    assert done.record["status"] == "COMPLETED", (done.record, done.transcript[-3000:])
    # Exactly the change: no state of the CLI (it keeps it in the job's own HOME).
    assert done.changed_files == ["greet.py"]
    assert '+def greet(name: str = "world"):' in done.patch and '+    return f"hello, {name}"' in done.patch
    assert done.summary["final_message"] == ANSWER
    assert done.summary["agent_error"] is None
    # Outpost counts every prompt token (fresh, cache writes, cache reads) as input.
    expected = {
        "input": sum(
            t.input_tokens + t.cache_creation_input_tokens + t.cache_read_input_tokens for t in TURNS
        ),
        "cached": sum(t.cache_read_input_tokens for t in TURNS),
        "output": sum(t.output_tokens for t in TURNS),
    }
    assert done.record["tokens"] == expected
    # Claude Code prices the run itself, from its own table by model: claude-sonnet-4-5 at $3/M
    # input, $3.75/M cache writes, $0.30/M cache reads, $15/M output.
    assert done.summary["cost_usd"] == pytest.approx((180 * 3 + 1200 * 3.75 + 2500 * 0.30 + 100 * 15) / 1e6)
    # The model gateway counted and priced the same calls (cache writes at 1.25 x input): its
    # figures are the dispatch's, and equal Claude Code's own.
    assert done.record["cost_usd"] == pytest.approx(done.summary["cost_usd"])
    assert done.record["cost_source"] == "gateway"
    # The dispatch's model, the configured endpoint, the key from the host environment.
    calls = calls_of(providers.anthropic, "caseedit")
    assert [r.json["model"] for r in calls] == [CLAUDE_MODEL] * 3
    assert all(r.json["stream"] for r in calls)
    assert {r.header("x-api-key") for r in calls} == {KEYS["ANTHROPIC_API_KEY"]}
    # No job called anything beyond the provider: no update check or telemetry (HTTPS_PROXY).
    assert egress.requests == [], [(r.method, r.path) for r in egress.requests]


@pytest.mark.parametrize("marker", sorted(ERRORS))
def test_claude_provider_error_fails_with_a_clear_agent_error(
    providers: Providers, jobs: dict[str, Finished], marker: str
):
    done = jobs[marker]
    said = ERRORS[marker][1]

    assert done.record["status"] == "FAILED", done.transcript[-2000:]
    assert done.summary["agent_error"] and said in done.summary["agent_error"], done.summary
    assert said in done.record["error"], done.record["error"]
    assert done.patch == ""
    # Bounded: the first try and CLAUDE_CODE_MAX_RETRIES more.
    assert len(calls_of(providers.anthropic, marker)) <= 1 + CLAUDE_RETRIES


def test_a_spent_dispatch_budget_stops_claude_mid_job(providers: Providers, outpost: RealOutpost):
    """A tenant whose dispatches may spend $0.001: Claude Code's first call through the model
    gateway costs more, so the gateway ends the dispatch FAILED (budget-exceeded) and stops its
    task; no later call of that job reaches the provider."""
    fake = providers.anthropic
    fake.script(after=by_marker({"casebudget": in_order(*edit_turns(fake))}))
    dev = outpost.dev
    admin = {"Authorization": f"Bearer {dev.admin_key}"}
    with httpx.Client(base_url=dev.url, timeout=30) as client:
        tenant = client.post("/tenants", json={"name": "frugal", "budget_dispatch_usd": 0.001}, headers=admin)
        assert tenant.status_code == 201, tenant.text
        as_tenant = {"Authorization": f"Bearer {tenant.json()['api_key']}"}
        repo = outpost.repository("claude-budget", {"greet.py": GREET})
        created = client.post(
            "/dispatch",
            json={
                "agent": "claude",
                "task": "Give greet() a name (casebudget).",
                "repo": {"url": repo},
                "model": CLAUDE_MODEL,  # a priced model: the gateway prices each call by it
            },
            headers=as_tenant,
        )
        assert created.status_code == 202, created.text
        dispatch_id = created.json()["dispatch_id"]

        def ended() -> dict | None:
            record = client.get(f"/dispatch/{dispatch_id}", headers=as_tenant).json()
            return record if record["status"] in TERMINAL else None

        record = wait_for(ended, 120, interval=0.5, what="the over-budget dispatch ends")
    assert record["status"] == "FAILED"
    assert "dispatch's budget of $0.001 is spent" in record["error"]
    assert len(calls_of(fake, "casebudget")) == 1  # the first call only: the next was refused
    assert record["cost_usd"] == pytest.approx((40 * 3 + 1200 * 3.75 + 30 * 15) / 1e6)
