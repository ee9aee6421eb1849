"""Gemini CLI (npm ``@google/gemini-cli``, executable ``gemini``).

Command line::

    gemini --prompt=<task> --output-format stream-json --approval-mode yolo

What the documentation and source say (google-gemini/gemini-cli ``docs/cli/headless.md``,
``packages/core/src/output/types.ts`` and ``stream-json-formatter.ts``; looked up 2026-11-25):

- ``-p``/``--prompt`` forces headless mode: one prompt, then exit. Outpost passes it as
  ``--prompt=<task>`` so that a task starting with ``-`` cannot be read as a flag.
- ``--output-format`` (``-o``) takes ``text``, ``json`` or ``stream-json``. ``json`` prints
  one object at the end: ``session_id``, ``response``, ``stats`` (``models.<name>.tokens``
  with ``prompt``, ``candidates``, ``cached``, ``total``, ...) and ``error``
  (``type``, ``message``, ``code``). ``stream-json`` prints JSONL events while it works:
  ``init`` (``session_id``, ``model``), ``message`` (``role``, ``content``, ``delta: true``
  for incremental assistant text), ``tool_use``, ``tool_result``, ``error`` and a final
  ``result`` (``status``, ``error``, ``stats``: ``total_tokens``, ``input_tokens``,
  ``output_tokens``, ``cached``, ``input``, ``duration_ms``, ``tool_calls``). Outpost uses
  ``stream-json`` for live logs; the parser reads both formats. No cost is printed.
- Exit codes: 0 success, 1 general/API error, 41 auth, 42 input, 52 config, 53 turn limit,
  54 fatal tool error, 130 cancelled.
- ``--approval-mode yolo`` approves every tool call (``--yolo`` is the deprecated spelling;
  combining both is an error). YOLO only removes prompts; the Fargate task is the sandbox.
  With folder trust enabled, an untrusted folder forces the default mode, and a headless
  run cannot approve anything: the agent image must leave folder trust off or trust the
  workspace (dev.to, "Gemini CLI YOLO mode, read from the source", checked against
  gemini-cli 0.65.0-nightly, October 2026).
- The key comes from ``GEMINI_API_KEY``, the name the registry gives the ``google`` secret
  (``PROVIDER_KEY_ENV``); a key supplied as ``GOOGLE_API_KEY`` is copied under that name.

Watch: on 2026-06-18 Google ended Gemini CLI's bundled access for free, Pro and Ultra
accounts and named the Antigravity CLI (``agy``) its successor; ``agy`` authenticates with
interactive OAuth only (no API-key path), so it cannot run in a headless task. Gemini CLI is
still maintained for Code Assist Standard/Enterprise; whether a plain Gemini API key keeps
working with it is not confirmed here: check before relying on this agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agents.adapters.base import Adapter, AgentOutput, add_optional, as_int, clip, json_objects


def arguments(task: str, scratch: Path, env: Mapping[str, str]) -> list[str]:
    return [f"--prompt={task}", "--output-format", "stream-json", "--approval-mode", "yolo"]


def _error_message(error: Any) -> str | None:
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return None


def _single_object(event: dict[str, Any]) -> AgentOutput:
    """The ``--output-format json`` shape: tokens summed over every model used."""
    input_tokens = output_tokens = cached = None
    stats: dict[str, Any] = event["stats"] if isinstance(event.get("stats"), dict) else {}
    models: dict[str, Any] = stats["models"] if isinstance(stats.get("models"), dict) else {}
    for model in models.values():
        tokens = model.get("tokens") if isinstance(model, dict) else None
        if isinstance(tokens, dict):
            input_tokens = add_optional(input_tokens, as_int(tokens.get("prompt")))
            output_tokens = add_optional(output_tokens, as_int(tokens.get("candidates")))
            cached = add_optional(cached, as_int(tokens.get("cached")))
    response = event.get("response") if isinstance(event.get("response"), str) else None
    return AgentOutput(
        final_message=clip(response),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached,
        error=clip(_error_message(event.get("error"))),
    )


def parse(output: str) -> AgentOutput:
    events = list(json_objects(output))
    for event in events:
        if "type" not in event and ("response" in event or "stats" in event or "error" in event):
            return _single_object(event)

    # stream-json: the final message is the assistant text after the last tool call.
    text: list[str] = []
    result: dict[str, Any] | None = None
    error: str | None = None
    for event in events:
        kind = event.get("type")
        if kind == "tool_use":
            text = []
        elif kind == "message" and event.get("role") == "assistant":
            if isinstance(event.get("content"), str):
                text.append(event["content"] if event.get("delta") else event["content"] + "\n")
        elif kind == "error" and event.get("severity") == "error":
            error = str(event.get("message") or "error")
        elif kind == "result":
            result = event
    stats: dict[str, Any] = {}
    if result is not None:
        stats = result["stats"] if isinstance(result.get("stats"), dict) else {}
        if result.get("status") == "error":
            error = _error_message(result.get("error")) or error or "error"
    return AgentOutput(
        final_message=clip("".join(text)),
        input_tokens=as_int(stats.get("input_tokens")),
        output_tokens=as_int(stats.get("output_tokens")),
        cached_input_tokens=as_int(stats.get("cached")),
        error=clip(error),
    )


ADAPTER = Adapter(
    name="gemini",
    arguments=arguments,
    parse=parse,
    key_aliases={"GEMINI_API_KEY": ("GOOGLE_API_KEY",)},
)
