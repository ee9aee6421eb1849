"""aider 0.86.2 (the pinned CLI, in its own virtual environment) through Outpost against a fake
OpenAI Chat Completions API, with the model ``openai/gpt-4o`` (litellm's name) as the agent's
default model in the operator's settings.

Aider edits by text, not tools: the scripted model answers in aider's "diff" edit format
(SEARCH/REPLACE blocks). A file the model edits without having it in the chat is added to the
chat first and the model asked again, so the edit comes twice, as with a real model. The
module's two jobs (an edit, a refused key) run at once, told apart by a marker in the task.
"""

from __future__ import annotations

import pytest

from tests.agents.real.conftest import (
    AIDER_MODEL,
    KEYS,
    Egress,
    Finished,
    Providers,
    RealOutpost,
    by_marker,
    calls_of,
    in_order,
)
from tests.providers.openai_chat import FakeChat, Usage
from tests.providers.server import Step

GREET = 'def greet():\n    return "hello"\n'
ANSWER = "I gave greet() a name parameter with a default."
EDIT = (
    "greet.py\n```python\n<<<<<<< SEARCH\n"
    'def greet():\n    return "hello"\n'
    "=======\n"
    'def greet(name: str = "world"):\n    return f"hello, {name}"\n'
    ">>>>>>> REPLACE\n```\n\n" + ANSWER
)


def edit_turns(fake: FakeChat) -> list[Step]:
    """aider's two model calls of the edit (the second after it adds the file to the chat)."""
    return [fake.turn(EDIT, Usage(1200, 0, 60)), fake.turn(EDIT, Usage(1600, 0, 80))]


@pytest.fixture(scope="module")
def jobs(providers: Providers, outpost: RealOutpost, egress: Egress) -> dict[str, Finished]:
    fake = providers.aider
    egress.script()  # forget earlier modules' requests
    edit = in_order(*edit_turns(fake))
    fake.script(after=by_marker({"caseedit": edit, "case401": fake.error(401, "Incorrect API key provided")}))
    repo = outpost.repository("aider", {"greet.py": GREET})
    started = {
        m: outpost.start("aider", f"Give greet() a name parameter ({m}).", repo_url=repo)
        for m in ("caseedit", "case401")
    }
    return {marker: outpost.finish(dispatch_id) for marker, dispatch_id in started.items()}


def test_aider_edits_a_file_and_completes_with_tokens_and_cost(
    providers: Providers, jobs: dict[str, Finished], egress: Egress
):
    done = jobs["caseedit"]

    assert done.record["status"] == "COMPLETED", (done.record, done.transcript[-3000:])
    # Exactly the change: not the repo map's cache (.aider.tags.cache.v4), no history files.
    assert done.changed_files == ["greet.py"], done.patch[:2000]
    assert '+def greet(name: str = "world"):' in done.patch
    # The model's words only: no startup banner, analytics notice or connection errors.
    assert done.summary["final_message"] == ANSWER
    assert done.summary["agent_error"] is None
    # The model gateway counts the provider's exact usage (aider itself prints rounded counts,
    # "1.2k sent", and no cached count for an OpenAI answer).
    assert done.record["tokens"] == {"input": 1200 + 1600, "cached": 0, "output": 60 + 80}
    # aider prices the run from litellm's shipped price list (gpt-4o: $2.50/M in, $10/M out)
    # and prints the session's total (to two significant digits below a cent).
    assert done.summary["cost_usd"] == 0.0084 == round(2800 * 2.5e-6 + 140 * 10e-6, 4)
    # the gateway's price of the same calls (agents/prices.toml), the dispatch's figure
    assert (done.record["cost_usd"], done.record["cost_source"]) == (pytest.approx(0.0084), "gateway")
    # Nothing but the two model calls, with the model and key set.
    calls = calls_of(providers.aider, "caseedit")
    assert [r.path for r in calls] == ["/v1/chat/completions"] * 2
    assert {r.json["model"] for r in calls} == {AIDER_MODEL.removeprefix("openai/")}
    assert {r.header("Authorization") for r in calls} == {f"Bearer {KEYS['OPENAI_API_KEY']}"}
    assert "Analytics" not in done.transcript and "not a terminal" not in done.transcript
    assert "raw.githubusercontent.com" not in done.transcript
    # No job called anything beyond the provider: no price list, analytics or update check.
    assert egress.requests == [], [(r.method, r.path) for r in egress.requests]


def test_aider_refused_key_fails_with_a_clear_agent_error(providers: Providers, jobs: dict[str, Finished]):
    """aider exits 0 after a provider error; the job must still fail, saying why. (429, 500 and
    a malformed answer are retried by aider for about two minutes, with no setting to shorten
    it: docs/agents.md.)"""
    done = jobs["case401"]

    assert done.record["status"] == "FAILED", done.transcript[-2000:]
    assert "AuthenticationError" in done.summary["agent_error"]
    assert "Incorrect API key provided" in done.summary["agent_error"]
    assert done.record["error"].startswith("agent reported an error: litellm.AuthenticationError")
    assert done.patch == ""
    assert len(calls_of(providers.aider, "case401")) == 1
