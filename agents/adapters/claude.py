"""Claude Code (npm ``@anthropic-ai/claude-code``, executable ``claude``).

Command line::

    claude -p --output-format stream-json --verbose --dangerously-skip-permissions -- <task>

What the documentation says (looked up 2026-11-25):

- ``-p``/``--print`` runs one prompt non-interactively and exits; the exit code reflects
  success (https://docs.anthropic.com/en/docs/claude-code/cli-reference).
- ``--output-format`` takes ``text``, ``json`` or ``stream-json``; ``stream-json`` prints one
  JSON event per line (``system`` init, ``assistant``/``user`` messages with tool calls and
  results) and ends with the same ``result`` object that ``json`` prints alone. ``stream-json``
  with ``--print`` needs ``--verbose`` (same page; dev.to "claude code output format json").
  Outpost uses ``stream-json`` so that the dispatch log shows the work while it happens.
- The ``result`` object: ``type: "result"``, ``subtype`` (``success`` or an ``error_*``),
  ``is_error``, ``duration_ms``, ``num_turns``, ``result`` (final text), ``session_id``,
  ``total_cost_usd`` (older releases: ``cost_usd``) and ``usage`` with ``input_tokens``,
  ``cache_creation_input_tokens``, ``cache_read_input_tokens``, ``output_tokens``
  (https://claude-cli-mastery.pages.dev/getting-started/json-envelope).
- ``--dangerously-skip-permissions`` (same as ``--permission-mode bypassPermissions``) lets the
  agent edit files and run commands without asking: nobody is there to answer, and the
  Fargate task, not the CLI, is the sandbox (no AWS permissions, no credentials but the key).
  Claude Code refuses it as root ("cannot be used with root/sudo privileges") unless
  ``IS_SANDBOX=1`` says the machine is a sandbox. Agent images run as uid 10001, so they never
  need it; a local-mode runner started by root (``outpost dev`` on a root machine or in a
  container) sets it, because there the user chose to run the agent on that machine.
- ``--`` ends the options, so a task that starts with ``-`` stays the prompt (commander).
- The key comes from ``ANTHROPIC_API_KEY``; in ``-p`` mode it is always used.
- Model and endpoint (Outpost's ``OUTPOST_AGENT_MODEL`` / ``OUTPOST_AGENT_BASE_URL``):
  ``--model <name>`` and ``ANTHROPIC_BASE_URL`` (the Messages API is ``$ANTHROPIC_BASE_URL/v1/messages``).
- Retries: ``CLAUDE_CODE_MAX_RETRIES`` (default 10, with backoff: about three minutes before a
  persistent 429/500, and a 401, ends the run). An operator may lower it per environment
  (agent settings ``extra``).
- When the CLI stops before its ``result`` event (it refused its flags, it crashed), the
  last line it printed that is not an event is the error.
- ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`` turns off the auto-updater, telemetry, error
  reporting and the bug command (https://code.claude.com/docs/en/env-vars; anthropics/
  claude-code issue 29134): the task's egress is for the model API, and the image is fixed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agents.adapters.base import (
    Adapter,
    AgentOutput,
    add_optional,
    as_float,
    as_int,
    clip,
    json_objects,
    last_words,
)
from agents.agent_settings import BASE_URL_ENV, MODEL_ENV


def arguments(task: str, scratch: Path, env: Mapping[str, str]) -> list[str]:
    model = env.get(MODEL_ENV)
    return [
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--dangerously-skip-permissions",
        *(["--model", model] if model else []),
        "--",
        task,
    ]


def setup(home: Path, env: Mapping[str, str]) -> dict[str, str]:
    extra = {}
    if env.get(BASE_URL_ENV):
        extra["ANTHROPIC_BASE_URL"] = env[BASE_URL_ENV]
    if os.geteuid() == 0:
        extra["IS_SANDBOX"] = "1"  # only a root local-mode runner; images run as uid 10001
    return extra


def _assistant_text(event: dict[str, Any]) -> str | None:
    message = event.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        return None
    texts = [
        block["text"]
        for block in message["content"]
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
    ]
    return "\n".join(texts) if texts else None


def parse(output: str) -> AgentOutput:
    result: dict[str, Any] | None = None
    last_text: str | None = None
    for event in json_objects(output):
        if event.get("type") == "result":
            result = event
        elif event.get("type") == "assistant":
            last_text = _assistant_text(event) or last_text
    if result is None:
        said = last_words(output)
        missing = "Claude Code ended without a result event" + (f": {said}" if said else "")
        return AgentOutput(final_message=clip(last_text), error=clip(missing))

    usage: dict[str, Any] = result["usage"] if isinstance(result.get("usage"), dict) else {}
    fresh = as_int(usage.get("input_tokens"))
    cache_write = as_int(usage.get("cache_creation_input_tokens"))
    cache_read = as_int(usage.get("cache_read_input_tokens"))
    cost = as_float(result.get("total_cost_usd"))
    if cost is None:
        cost = as_float(result.get("cost_usd"))
    final = result.get("result") if isinstance(result.get("result"), str) else last_text
    error = None
    if result.get("is_error") or str(result.get("subtype", "success")) != "success":
        error = clip(final if isinstance(final, str) and final else str(result.get("subtype")))
    return AgentOutput(
        final_message=clip(final),
        input_tokens=add_optional(fresh, cache_write, cache_read),
        output_tokens=as_int(usage.get("output_tokens")),
        cached_input_tokens=cache_read,
        cost_usd=cost,
        error=error,
    )


ADAPTER = Adapter(
    name="claude",
    arguments=arguments,
    parse=parse,
    defaults={"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"},
    setup=setup,
)
