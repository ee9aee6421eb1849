"""Gemini CLI (npm ``@google/gemini-cli``, executable ``gemini``).

Command line::

    gemini --prompt=<task> --output-format stream-json --approval-mode yolo --skip-trust [--model <model>]

with a settings file written by :func:`setup` into the job's own HOME.

What the documentation and source say (google-gemini/gemini-cli ``docs/cli/headless.md``,
``packages/core/src/output/types.ts`` and ``stream-json-formatter.ts``; looked up 2026-11-25):

- ``-p``/``--prompt`` forces headless mode: one prompt, then exit. Outpost passes it as
  ``--prompt=<task>`` so that a task starting with ``-`` cannot be read as a flag.
- ``--output-format`` (``-o``) takes ``text``, ``json`` or ``stream-json``. ``json`` prints
  one object at the end: ``session_id``, ``response``, ``stats`` (``models.<name>.tokens``
  with ``prompt``, ``candidates``, ``cached``, ``thoughts``, ``total``, ...) and ``error``.
  ``stream-json`` prints JSONL events while it works: ``init`` (``session_id``, ``model``),
  ``message`` (``role``, ``content``, ``delta: true`` for incremental assistant text),
  ``tool_use``, ``tool_result``, ``error`` and a final ``result`` (``status``, ``error``,
  ``stats``: ``total_tokens``, ``input_tokens``, ``output_tokens``, ``cached``, ``input``,
  ...). Outpost uses ``stream-json`` for live logs; the parser reads both formats. No cost is
  printed.
- ``--approval-mode yolo`` approves every tool call. YOLO only removes prompts; the Fargate
  task is the sandbox.
- The key comes from ``GEMINI_API_KEY``, the name the registry gives the ``google`` secret
  (``PROVIDER_KEY_ENV``); a key supplied as ``GOOGLE_API_KEY`` is copied under that name.

What gemini 0.61.0 does, tried against a loopback Gemini API (tests/agents/real):

- Folder trust is on by default (``security.folderTrust.enabled``), and a fresh clone is in
  no trusted-folders list. The CLI computes the approval mode first and then forces every
  mode but ``default`` back to ``default`` in an untrusted folder ("Approval mode overridden
  to "default" because the current folder is not trusted"); headless, nobody can approve a
  tool call, and the run exits 55 asking for ``--skip-trust``. ``--skip-trust`` (the
  documented switch for headless and automated runs, which sets
  ``GEMINI_CLI_TRUST_WORKSPACE=true``) trusts the workspace for this run only, so YOLO holds.
  The job's clone is the workspace the job was given: trusting its settings gives it nothing
  a YOLO agent in the same sandbox does not already have.
- With ``GOOGLE_GEMINI_BASE_URL`` set, the CLI picks the "gateway" auth method, which
  headless mode refuses (exit 41, "Invalid auth method selected"). ``security.auth.
  selectedType = "gemini-api-key"`` selects the API key, which then honours
  ``GOOGLE_GEMINI_BASE_URL`` (the API root: the SDK appends ``/v1beta/models/...``).
- Without ``--model`` the model is ``auto``: a classifier request to a flash-lite model
  chooses the model for each turn. ``--model`` names the model of every request.
- A failed request (429, 5xx) is tried up to ``general.maxAttempts`` times (default 10) with
  a backoff starting at 5 s, or at a 429's ``RetryInfo`` delay when that is longer.
- Its defaults (``settingsSchema.ts``) turn on usage statistics (Clearcut) and automatic
  updates; with them off, as below, a run looked up no host but the model endpoint (strace).
- It starts itself a second time to raise Node's heap limit unless
  ``GEMINI_CLI_NO_RELAUNCH`` is set: the second start costs about 1.5 s of CPU per job.
- Exit codes seen: 0 success, 41 auth method refused, 55 untrusted folder, and other non-zero
  codes (1, 145, 173, 244) for API errors, after a ``result`` event with ``status: "error"``.

Outpost's settings go into the user settings file, ``$HOME/.gemini/settings.json`` in the
job's own HOME. (The system settings file, ``GEMINI_CLI_SYSTEM_SETTINGS_PATH``, would override
the workspace's too, but the CLI skips it when any parent directory is writable by others, as
``/tmp`` is under a local-mode job's scratch space.) A repository's ``.gemini/settings.json``
still applies over it; ``GEMINI_TELEMETRY_ENABLED=false`` holds whatever it says, and the task's
egress allowlist holds the rest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agents.adapters.base import Adapter, AgentOutput, add_optional, as_int, clip, json_objects, last_words
from agents.agent_settings import BASE_URL_ENV, MODEL_ENV

# One retry (after the CLI's 5 s backoff) for a failed model request, instead of nine.
MAX_ATTEMPTS = 2
SETTINGS: dict[str, Any] = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "general": {
        "enableAutoUpdate": False,
        "enableAutoUpdateNotification": False,
        "maxAttempts": MAX_ATTEMPTS,
    },
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
}
_API_ERROR = re.compile(r"^\[API Error: (?P<body>\{.*\})\]", re.DOTALL)


def arguments(task: str, scratch: Path, env: Mapping[str, str]) -> list[str]:
    model = env.get(MODEL_ENV)
    return [
        f"--prompt={task}",
        "--output-format",
        "stream-json",
        "--approval-mode",
        "yolo",
        "--skip-trust",
        *(["--model", model] if model else []),
    ]


def setup(home: Path, env: Mapping[str, str]) -> dict[str, str]:
    path = home / ".gemini" / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(SETTINGS, indent=2) + "\n", encoding="utf-8")
    return {"GOOGLE_GEMINI_BASE_URL": env[BASE_URL_ENV]} if env.get(BASE_URL_ENV) else {}


def _error_message(error: Any) -> str | None:
    if not isinstance(error, dict) or not error.get("message"):
        return None
    message = str(error["message"])
    # "[API Error: {"error":{"code":401,"message":"API key not valid...","status":...}}]"
    match = _API_ERROR.match(message)
    if match:
        try:
            body = json.loads(match.group("body")).get("error")
        except (ValueError, AttributeError):
            body = None
        if isinstance(body, dict) and body.get("message"):
            status = " ".join(["API error", *(str(body[k]) for k in ("code", "status") if body.get(k))])
            return f"{status}: {body['message']}"
    return message


def _single_object(event: dict[str, Any]) -> AgentOutput:
    """The ``--output-format json`` shape: tokens summed over every model used."""
    input_tokens = output_tokens = cached = None
    stats: dict[str, Any] = event["stats"] if isinstance(event.get("stats"), dict) else {}
    models: dict[str, Any] = stats["models"] if isinstance(stats.get("models"), dict) else {}
    for model in models.values():
        tokens = model.get("tokens") if isinstance(model, dict) else None
        if isinstance(tokens, dict):
            input_tokens = add_optional(input_tokens, as_int(tokens.get("prompt")))
            # Thinking tokens are billed as output.
            output_tokens = add_optional(
                output_tokens, as_int(tokens.get("candidates")), as_int(tokens.get("thoughts"))
            )
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
    if result is None:
        said = last_words(output)
        missing = "gemini ended without a result event" + (f": {said}" if said else "")
        return AgentOutput(final_message=clip("".join(text)), error=clip(error or missing))
    stats: dict[str, Any] = result["stats"] if isinstance(result.get("stats"), dict) else {}
    if result.get("status") == "error":
        error = _error_message(result.get("error")) or error or "error"
    elif result.get("status") == "success":
        error = None  # the run recovered from what its error events said
    input_tokens = as_int(stats.get("input_tokens"))
    output_tokens = as_int(stats.get("output_tokens"))
    total = as_int(stats.get("total_tokens"))
    if input_tokens is not None and output_tokens is not None and total is not None:
        # stream-json counts thinking tokens (billed as output) only in total_tokens.
        output_tokens = max(output_tokens, total - input_tokens)
    return AgentOutput(
        final_message=clip("".join(text)),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=as_int(stats.get("cached")),
        error=clip(error),
    )


ADAPTER = Adapter(
    name="gemini",
    arguments=arguments,
    parse=parse,
    key_aliases={"GEMINI_API_KEY": ("GOOGLE_API_KEY",)},
    defaults={"GEMINI_CLI_NO_RELAUNCH": "true", "GEMINI_TELEMETRY_ENABLED": "false"},
    setup=setup,
)
