"""What kind of failure an agent's error is: the model API's, the network's, or the agent's own.

The runner reports the kind with a FAILED outcome (``error_kind`` in the result summary) and the
control plane counts the failure under it (metrics Reason ``api``, ``network``, ``agent-error``),
so that operators see provider trouble (a refused key, rate limits, 5xx, a broken stream) and
an unreachable endpoint apart from agents that simply failed their task.

The kind is read from what the adapter's parser kept of the CLI's error (AgentOutput.error),
by each CLI's own structured signal: the HTTP status or provider error type it prints (claude
``API Error: 429 {...}``, codex ``unexpected status 401``, gemini ``API error 500 INTERNAL``,
aider ``litellm.RateLimitError``, grok's OpenAI SDK ``429 ...``) and the wrapper it puts around
a failed model call. Only where a CLI says nothing structured about a connection failure are
the transport's own words matched (the Node.js, reqwest and httpx error texts below).
"""

from __future__ import annotations

import re
from collections.abc import Callable

API = "api"  # the model API answered with an error (4xx/5xx) or a stream the CLI could not read
NETWORK = "network"  # the model API was not reached: connection refused or reset, DNS, TLS, timeout
AGENT = "agent"  # anything else: the agent exited non-zero, checkout, runner, a CLI of its own
KINDS: tuple[str, ...] = (API, NETWORK, AGENT)

# What the transports say when the connection itself failed: Node.js (undici ``fetch failed``,
# system error codes), the OpenAI/Anthropic SDKs (``Connection error.``, ``Request timed out.``),
# reqwest (codex: ``error sending request``), httpx (``Connection refused``), and Claude Code's
# own words for them (``Can't reach the API server``).
_CONNECTION = re.compile(
    r"\b(connection (error|refused|reset|failed)|request timed out|fetch failed|"
    r"error sending request|can't reach the api server|name or service not known|getaddrinfo|"
    r"network is unreachable|certificate verify failed|"
    r"ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH)\b",
    re.IGNORECASE,
)
_STATUS = re.compile(r"\b[45]\d\d\b")


def _claude(error: str) -> str:
    # Claude Code words a failed model call "API Error: <status> <message>", "API Error: Request
    # rejected (429) ...", "API Error: <cause> (ECONNREFUSED)", after "Failed to authenticate. "
    # for a 401; a refused key may also read "Invalid API key · ...".
    if error.startswith("Invalid API key"):
        return API
    at = error.find("API Error")
    if at < 0 or error.startswith("Claude Code ended without"):
        return AGENT
    head = error[at:].split("{", 1)[0]  # the status and cause, not the provider's JSON body
    return NETWORK if not _STATUS.search(head) and _CONNECTION.search(head) else API


def _codex(error: str) -> str:
    # codex's failed turn: "unexpected status 401 ...", "exceeded retry limit, last status:
    # 429 ...", its fixed sentence for a 5xx, "stream disconnected before completion: <cause>";
    # the adapter's own text when codex ended without saying.
    if error.startswith("codex ended without"):
        return AGENT
    if re.search(r"status:? [45]\d\d\b", error) or "experiencing high demand" in error:
        return API
    return NETWORK if _CONNECTION.search(error) else API


def _gemini(error: str) -> str:
    # The adapter writes an API error's JSON body as "API error <code> <STATUS>: <message>";
    # gemini words the other failed model calls "[API Error: <cause>]".
    if error.startswith("API error "):
        return API
    if _CONNECTION.search(error):
        return NETWORK
    return API if error.startswith("[API Error") else AGENT


def _aider(error: str) -> str:
    # aider prints litellm's exception: its class name is the kind, except that litellm files
    # the OpenAI SDK's connection failure under InternalServerError ("... OpenAIException -
    # Connection error."), so the SDK's own message decides there.
    name = re.match(r"litellm\.(\w+)", error)
    if name is None:
        return AGENT
    if name.group(1) in ("APIConnectionError", "Timeout"):
        return NETWORK
    cause = re.search(r"Exception - (.*)", error)
    return NETWORK if cause and re.match(r"(Connection error|Request timed out)", cause.group(1)) else API


def _grok(error: str) -> str:
    # grok wraps a failed model call as "Sorry, I encountered an error: Grok API error: <the
    # OpenAI SDK's message>": "<status> <message>" from the API, "Connection error." or
    # "Request timed out." when it was not reached; a reply it could not read breaks its agent
    # loop under the same wrapper. "Error: <message>" is what escaped that loop.
    model_call = error.startswith("Sorry, I encountered an error: ")
    cause = error.removeprefix("Sorry, I encountered an error: ").removeprefix("Error: ")
    cause = cause.removeprefix("Grok API error: ")
    if _STATUS.match(cause):
        return API
    if _CONNECTION.match(cause):
        return NETWORK
    return API if model_call else AGENT


_BY_AGENT: dict[str, Callable[[str], str]] = {
    "claude": _claude,
    "codex": _codex,
    "gemini": _gemini,
    "aider": _aider,
    "grok": _grok,
}


def error_kind(agent: str, agent_error: str | None) -> str:
    """The kind of a failed job, from the error the agent's adapter parsed (None: none parsed)."""
    if not agent_error or agent not in _BY_AGENT:
        return AGENT
    return _BY_AGENT[agent](agent_error)
