"""grok-cli 0.0.34 (npm ``@vibe-kit/grok-cli``, the pinned CLI) through Outpost against a fake
xAI endpoint (OpenAI-compatible Chat Completions; headless grok does not stream).

The scripted model edits through grok's own ``str_replace_editor`` tool after viewing the file.
"""

from __future__ import annotations

from tests.agents.real.conftest import KEYS, Providers, RealOutpost, by_marker
from tests.providers.openai_chat import ToolCall, Usage

GREET = 'def greet():\n    return "hello"\n'
ANSWER = "greet() now takes a name and greets it."


def test_grok_edits_a_file_and_completes(providers: Providers, outpost: RealOutpost):
    fake = providers.grok
    edit = {
        "path": "greet.py",
        "old_str": 'def greet():\n    return "hello"',
        "new_str": 'def greet(name: str = "world"):\n    return f"hello, {name}"',
    }
    fake.script(
        fake.turn(None, Usage(900, 0, 20), (ToolCall("view_file", {"path": "greet.py"}, "call_view"),)),
        fake.turn(None, Usage(1000, 0, 40), (ToolCall("str_replace_editor", edit, "call_edit"),)),
        fake.turn(ANSWER, Usage(1100, 0, 12)),
    )
    repo = outpost.repository("grok-greet", {"greet.py": GREET})

    done = outpost.run("grok", "Give greet() a name parameter.", repo_url=repo)

    assert done.record["status"] == "COMPLETED", (done.record, done.transcript[-3000:])
    # Exactly the change: not grok's project settings (.grok/settings.json).
    assert done.changed_files == ["greet.py"], done.patch[:2000]
    assert '+def greet(name: str = "world"):' in done.patch
    assert done.summary["final_message"] == ANSWER
    assert done.summary["agent_error"] is None
    # grok prints no usage: Outpost has no tokens and no cost from the agent.
    assert done.record["tokens"] is None
    assert done.record["cost_source"] != "agent"
    assert len(fake.model_calls) == 3
    assert {r.header("Authorization") for r in fake.model_calls} == {f"Bearer {KEYS['GROK_API_KEY']}"}


ERRORS = {
    "case401": (lambda fake: fake.error(401, "Incorrect API key provided"), "401"),
    "case429": (lambda fake: fake.error(429, "Rate limit reached"), "429"),
    "case500": (lambda fake: fake.error(500, "upstream exploded"), "500"),
    "casebroken": (lambda fake: fake.malformed(), "Sorry, I encountered an error"),
}


def test_grok_provider_errors_fail_with_a_clear_agent_error(providers: Providers, outpost: RealOutpost):
    """grok exits 0 after a provider error; each job must still fail, saying why."""
    fake = providers.grok
    fake.script(after=by_marker({marker: answer(fake) for marker, (answer, _) in ERRORS.items()}))
    repo = outpost.repository("grok-errors", {"greet.py": GREET})

    started = {
        m: outpost.start("grok", f"Give greet() a name parameter ({m}).", repo_url=repo) for m in ERRORS
    }
    finished = {marker: outpost.finish(dispatch_id) for marker, dispatch_id in started.items()}

    for marker, done in finished.items():
        said = ERRORS[marker][1]
        assert done.record["status"] == "FAILED", (marker, done.transcript[-2000:])
        assert done.summary["agent_error"].startswith("Sorry, I encountered an error"), (marker, done.summary)
        assert said in done.summary["agent_error"], (marker, done.summary)
        assert done.patch == ""
