"""The kind of a failed job, read from the errors the real CLIs print.

Every string below is an ``agent_error`` the adapters parsed from the pinned CLIs (see
agents/clis): the provider errors from the real-agent tests (tests/agents/real, the fake
providers of tests/providers answering 401, 429, 500 or a broken stream), the network errors
from the same CLIs pointed at a closed loopback port (connection refused) and at an
unresolvable ``.invalid`` host (DNS), recorded 2026-12-02. (claude, aider and grok's provider
errors were recorded by running each CLI alone against the same fake providers.)
"""

from __future__ import annotations

import pytest

from agents.error_kinds import AGENT, API, KINDS, NETWORK, error_kind
from agents.registry import AGENTS
from control_plane import metrics
from control_plane.engine.outcomes import ERROR_KIND_REASONS

REAL_ERRORS: list[tuple[str, str, str]] = [
    # (agent, agent_error, kind)
    # -- codex 0.169.0
    (
        "codex",
        "unexpected status 401 Unauthorized: Incorrect API key provided: test-ope****cdef., "
        "url: http://127.0.0.1:40677/v1/responses",
        API,
    ),
    ("codex", "exceeded retry limit, last status: 429 Too Many Requests", API),
    ("codex", "We\u2019re currently experiencing high demand, which may cause temporary errors.", API),
    ("codex", "stream disconnected before completion: stream closed before response.completed", API),
    ("codex", "Connection failed: error sending request", NETWORK),  # refused and DNS alike
    # -- gemini 0.61.0
    ("gemini", "API error 401 UNAUTHENTICATED: API key not valid. Please pass a valid API key.", API),
    (
        "gemini",
        "[API Error: Resource has been exhausted (e.g. check quota).\nSuggested retry after 1s.]\n"
        "Please wait and try again later. To increase your limits, request a quota increase through "
        "AI Studio, or switch to another /auth method",
        API,
    ),
    ("gemini", "API error 500 INTERNAL: An internal error has occurred.", API),
    (
        "gemini",
        "[API Error: Expected ':' after property name in JSON at position 35 (line 1 column 36)]",
        API,
    ),
    ("gemini", "[API Error: exception TypeError: fetch failed sending request]", NETWORK),
    # -- claude
    ("claude", "Failed to authenticate. API Error: 401 Incorrect API key provided", API),
    ("claude", "API Error: Request rejected (429) \u00b7 Rate limit reached", API),
    (
        "claude",
        "API Error: 500 upstream exploded. This is a server-side issue, usually temporary \u2014 try "
        "again in a moment. If it persists, check your inference gateway (127.0.0.1:41741).",
        API,
    ),
    (
        "claude",
        "API Error: API returned an empty or malformed response (HTTP 200) \u2014 check for a proxy or "
        "gateway intercepting the request. Response: content-type event-stream, body is an event "
        "stream (the non-streaming request was answered with a stream), 71 bytes, request-id absent, "
        "server other. This was the non-streaming retry of streaming request (no Anthropic "
        "request-id), which failed with: other, SyntaxError; 0 stream events received.",
        API,
    ),
    (
        "claude",
        "API Error: Connection refused \u2014 a firewall or proxy may be blocking it (ECONNREFUSED)",
        NETWORK,
    ),
    (
        "claude",
        "API Error: Can't reach the API server \u2014 check your internet or DNS (ENOTFOUND)",
        NETWORK,
    ),
    # -- grok 0.0.34
    ("grok", "Sorry, I encountered an error: Grok API error: 401 Incorrect API key provided", API),
    ("grok", "Sorry, I encountered an error: Grok API error: 429 Rate limit reached", API),
    ("grok", "Sorry, I encountered an error: Grok API error: 500 upstream exploded", API),
    ("grok", "Sorry, I encountered an error: Cannot read properties of undefined (reading '0')", API),
    ("grok", "Sorry, I encountered an error: Grok API error: Connection error.", NETWORK),
    # -- aider 0.86.2 (litellm files the connection failure under InternalServerError)
    (
        "aider",
        "litellm.AuthenticationError: AuthenticationError: OpenAIException - Incorrect API key "
        "provided The API provider is not able to authenticate you. Check your API key.",
        API,
    ),
    (
        "aider",
        "litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached The API "
        "provider has rate limited you. Try again later or check your quotas.",
        API,
    ),
    (
        "aider",
        "litellm.InternalServerError: InternalServerError: OpenAIException - upstream exploded The "
        "API provider's servers are down or overloaded.",
        API,
    ),
    (
        "aider",
        "litellm.InternalServerError: InternalServerError: OpenAIException - Empty or invalid "
        'response from LLM endpoint. Received: \'data: {"id": "chatcmpl-fake", "choices": '
        '[{"delta": {"content": "Hel\\n\\n\'. Check the reverse proxy or model server '
        "configuration. The API provider's servers are down or overloaded.",
        API,
    ),
    (
        "aider",
        "litellm.InternalServerError: InternalServerError: OpenAIException - Connection error. "
        "The API provider's servers are down or overloaded.",
        NETWORK,
    ),
]

# What each adapter says itself when its CLI ended without saying why: the agent's failure.
ADAPTER_ERRORS = [
    ("claude", "Claude Code ended without a result event: error: unknown option '--bogus'"),
    ("codex", "codex ended without a turn.completed or turn.failed event: Error: bad config"),
    ("gemini", "gemini ended without a result event"),
    ("gemini", "Tool execution for run_shell_command denied by policy."),
    ("grok", "Error: Cannot find module 'openai'"),
    ("grok", "Error: GROK_API_KEY is required"),
    ("aider", "Traceback (most recent call last):"),
]


@pytest.mark.parametrize(("agent", "text", "kind"), REAL_ERRORS)
def test_classify_the_real_cli_errors(agent: str, text: str, kind: str) -> None:
    assert error_kind(agent, text) == kind


@pytest.mark.parametrize(("agent", "text"), ADAPTER_ERRORS)
def test_classify_an_adapters_own_error_as_the_agents(agent: str, text: str) -> None:
    assert error_kind(agent, text) == AGENT


def test_classify_a_failure_without_a_parsed_error_as_the_agents() -> None:
    for agent in AGENTS:
        assert error_kind(agent, None) == AGENT
        assert error_kind(agent, "") == AGENT
    # shell has no provider: whatever it printed is its own failure
    assert error_kind("shell", "Connection refused") == AGENT


def test_real_errors_cover_every_cli_and_kind() -> None:
    clis = {agent for agent in AGENTS if agent != "shell"}
    assert {agent for agent, _, kind in REAL_ERRORS if kind == NETWORK} == clis
    assert {kind for _, _, kind in REAL_ERRORS} == {API, NETWORK}


def test_every_kind_is_a_metrics_reason() -> None:
    assert set(ERROR_KIND_REASONS) == set(KINDS)
    assert (
        set(ERROR_KIND_REASONS.values())
        == {
            metrics.REASON_API,
            metrics.REASON_NETWORK,
            metrics.REASON_AGENT_ERROR,
        }
        <= set(metrics.FAILURE_REASONS)
    )
