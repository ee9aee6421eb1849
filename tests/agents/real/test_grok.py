"""grok-cli 0.0.34 (npm ``@vibe-kit/grok-cli``, the pinned CLI) through Outpost against a fake
xAI endpoint (OpenAI-compatible Chat Completions; headless grok does not stream).

The module's five jobs run at once, each told apart by a marker in its task: one edits
through grok's own ``view_file`` and ``str_replace_editor`` tools, four meet a provider error.
"""

from __future__ import annotations

import pytest

from tests.agents.real.conftest import (
    KEYS,
    Finished,
    Providers,
    RealOutpost,
    by_marker,
    calls_of,
    in_order,
)
from tests.providers.openai_chat import FakeChat, ToolCall, Usage
from tests.providers.server import Step

GREET = 'def greet():\n    return "hello"\n'
ANSWER = "greet() now takes a name and greets it."
EDIT = {
    "path": "greet.py",
    "old_str": 'def greet():\n    return "hello"',
    "new_str": 'def greet(name: str = "world"):\n    return f"hello, {name}"',
}
ERRORS = {
    # marker in the task -> (the provider's answer, what agent_error must say)
    "case401": (lambda fake: fake.error(401, "Incorrect API key provided"), "401"),
    "case429": (lambda fake: fake.error(429, "Rate limit reached"), "429"),
    "case500": (lambda fake: fake.error(500, "upstream exploded"), "500"),
    "casebroken": (lambda fake: fake.malformed(), "Sorry, I encountered an error"),
}


def edit_turns(fake: FakeChat) -> list[Step]:
    """grok's three model calls of the edit: view the file, replace the text, answer."""
    return [
        fake.turn(None, Usage(900, 0, 20), (ToolCall("view_file", {"path": "greet.py"}, "call_view"),)),
        fake.turn(None, Usage(1000, 0, 40), (ToolCall("str_replace_editor", EDIT, "call_edit"),)),
        fake.turn(ANSWER, Usage(1100, 0, 12)),
    ]


@pytest.fixture(scope="module")
def jobs(providers: Providers, outpost: RealOutpost) -> dict[str, Finished]:
    fake = providers.grok
    edit = in_order(*edit_turns(fake))
    fake.script(after=by_marker({"caseedit": edit, **{m: answer(fake) for m, (answer, _) in ERRORS.items()}}))
    repo = outpost.repository("grok", {"greet.py": GREET})
    started = {
        m: outpost.start("grok", f"Give greet() a name parameter ({m}).", repo_url=repo)
        for m in ["caseedit", *ERRORS]
    }
    return {marker: outpost.finish(dispatch_id) for marker, dispatch_id in started.items()}


def test_grok_edits_a_file_and_completes(providers: Providers, jobs: dict[str, Finished]):
    done = jobs["caseedit"]

    assert done.record["status"] == "COMPLETED", (done.record, done.transcript[-3000:])
    # Exactly the change: not grok's project settings (.grok/settings.json).
    assert done.changed_files == ["greet.py"], done.patch[:2000]
    assert '+def greet(name: str = "world"):' in done.patch
    assert done.summary["final_message"] == ANSWER
    assert done.summary["agent_error"] is None
    # grok prints no usage; the model gateway counted its three calls.
    assert done.record["tokens"] == {"input": 3000, "cached": 0, "output": 72}
    assert done.record["cost_source"] != "agent"
    calls = calls_of(providers.grok, "caseedit")
    assert len(calls) == 3
    assert {r.header("Authorization") for r in calls} == {f"Bearer {KEYS['GROK_API_KEY']}"}


@pytest.mark.parametrize("marker", sorted(ERRORS))
def test_grok_provider_error_fails_with_a_clear_agent_error(jobs: dict[str, Finished], marker: str):
    """grok exits 0 after a provider error; the job must still fail, saying why."""
    done = jobs[marker]
    said = ERRORS[marker][1]

    assert done.record["status"] == "FAILED", done.transcript[-2000:]
    assert done.summary["agent_error"].startswith("Sorry, I encountered an error"), done.summary
    assert said in done.summary["agent_error"], done.summary
    assert done.record["error"] == f"agent reported an error: {done.summary['agent_error']}"
    assert done.patch == ""
