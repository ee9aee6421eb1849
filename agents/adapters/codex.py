"""OpenAI Codex CLI (npm ``@openai/codex``, executable ``codex``).

Command line::

    codex exec --json --sandbox danger-full-access --skip-git-repo-check [--model <model>] -- <task>

with ``$CODEX_HOME/config.toml`` written by :func:`setup` into the job's own HOME.

What the documentation says (looked up 2026-11-25: "Non-interactive mode",
https://developers.openai.com/codex/noninteractive.md, and openai/codex ``docs/exec.md``):

- ``codex exec`` is the non-interactive mode: no approval prompts; progress on stderr, the
  final message on stdout. With a prompt argument and a piped stdin, stdin is appended as
  context; the runner gives the agent ``/dev/null``, so nothing is appended and nothing hangs.
- ``--json`` streams JSON Lines events to stdout: ``thread.started``, ``turn.started``,
  ``turn.completed`` (with ``usage``), ``turn.failed`` (with ``error.message``),
  ``item.started`` / ``item.updated`` / ``item.completed`` whose ``item.type`` is
  ``agent_message`` (``text``), ``reasoning``, ``command_execution``, ``file_change``, ...;
  a top-level ``error`` event carries ``message`` (also for each retry: "Reconnecting...
  1/2 (...)"). The final answer is the last ``agent_message``. Codex does not print a cost.
- ``exec`` runs read-only by default. ``--sandbox workspace-write`` uses Codex's own sandbox
  (Landlock/bubblewrap on Linux), which needs privileges a Fargate task with every
  capability dropped does not have; ``--sandbox danger-full-access`` is documented for
  "controlled environments, such as isolated CI runners or containers" — the one-job task is
  that container.
- ``--skip-git-repo-check``: the workspace is always a git repository; the flag only keeps a
  misdetected repository from aborting the job.

What codex 0.169.0 does, tried against a loopback Responses API (tests/agents/real):

- It ignores ``OPENAI_BASE_URL``. The endpoint is a ``model_providers`` entry in
  ``$CODEX_HOME/config.toml`` (``base_url`` up to ``/v1``; codex appends ``/responses``),
  selected by ``model_provider``. Outpost always writes its own entry, named ``outpost``, with
  ``OUTPOST_AGENT_BASE_URL`` or OpenAI's URL: the same retry bounds and key variable whichever
  endpoint the operator chose, and never a ChatGPT login.
- ``turn.completed``'s ``usage``: ``input_tokens`` (every prompt token, the Responses API's
  count), ``cached_input_tokens`` and ``cache_write_input_tokens`` (parts of it:
  ``input_tokens_details.cached_tokens`` and ``cache_write_tokens``), ``output_tokens``
  (reasoning included) and ``reasoning_output_tokens`` (part of it).
- Left to its defaults it reaches beyond the model endpoint: it resolves github.com and
  api.github.com (plugin marketplace sync), chatgpt.com (apps, remote plugins) and
  ab.chatgpt.com (analytics). ``[analytics] enabled = false``,
  ``check_for_update_on_startup = false`` and the features ``plugins``, ``remote_plugin`` and
  ``apps`` off leave only the model endpoint (checked with strace: no other DNS query).
- Connection failures are retried without end (feature ``unbounded_connection_retries``, on by
  default: a job pointed at an unreachable endpoint hangs until its timeout, printing
  "Reconnecting... waiting for network"). With the feature off, ``request_max_retries`` and
  ``stream_max_retries`` of the provider bound every retry.
- The key: the provider entry's ``env_key``, ``OPENAI_API_KEY`` (the ``openai`` secret's
  variable, registry ``PROVIDER_KEY_ENV``); a key given as ``CODEX_API_KEY`` is copied there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from agents.adapters.base import Adapter, AgentOutput, add_optional, as_int, clip, json_objects, last_words
from agents.agent_settings import BASE_URL_ENV, MODEL_ENV

DEFAULT_BASE_URL = "https://api.openai.com/v1"
KEY_ENV = "OPENAI_API_KEY"
# One retry of a failed model request (HTTP errors: 429, 5xx) and one of a broken stream.
# Codex multiplies them: each stream try makes up to 1 + request_max_retries requests, and the
# turn is tried twice, so a provider that keeps answering 500 sees at most 8 requests (4 to 8
# seen, within about 3 s; 2 and 2 sent 18). Its defaults, 4 and 5, allow 60, over about half a
# minute.
REQUEST_MAX_RETRIES = 1
STREAM_MAX_RETRIES = 1


def arguments(task: str, scratch: Path, env: Mapping[str, str]) -> list[str]:
    model = env.get(MODEL_ENV)
    return [
        "exec",
        "--json",
        "--sandbox",
        "danger-full-access",
        "--skip-git-repo-check",
        *(["--model", model] if model else []),
        "--",
        task,
    ]


def config_toml(env: Mapping[str, str]) -> str:
    """``$CODEX_HOME/config.toml``: Outpost's provider entry and no traffic but the model's."""
    base_url = env.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return "\n".join(
        [
            'model_provider = "outpost"',
            "check_for_update_on_startup = false",
            "",
            "[analytics]",
            "enabled = false",
            "",
            "[features]",
            "plugins = false",
            "remote_plugin = false",
            "apps = false",
            "unbounded_connection_retries = false",
            "",
            "[model_providers.outpost]",
            'name = "Outpost"',
            f"base_url = {_toml_string(base_url)}",
            f'env_key = "{KEY_ENV}"',
            'wire_api = "responses"',
            f"request_max_retries = {REQUEST_MAX_RETRIES}",
            f"stream_max_retries = {STREAM_MAX_RETRIES}",
            "",
        ]
    )


def setup(home: Path, env: Mapping[str, str]) -> dict[str, str]:
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(config_toml(env), encoding="utf-8")
    return {"CODEX_HOME": str(codex_home)}


def _toml_string(value: str) -> str:
    # A JSON string without \u escapes of astral characters (ensure_ascii=False) is a TOML
    # basic string: the same quotes and backslash escapes.
    return json.dumps(value, ensure_ascii=False)


def parse(output: str) -> AgentOutput:
    final: str | None = None
    error: str | None = None
    finished = False
    input_tokens: int | None = None
    cached: int | None = None
    output_tokens: int | None = None
    for event in json_objects(output):
        kind = event.get("type")
        if kind == "item.completed":
            item = event.get("item")
            if isinstance(item, dict) and item.get("type") == "agent_message":
                if isinstance(item.get("text"), str):
                    final = item["text"]
        elif kind == "turn.completed":
            finished = True
            error = None  # the "Reconnecting..." errors of retries that then succeeded
            usage = event["usage"] if isinstance(event.get("usage"), dict) else {}
            # input_tokens already counts the cached and cache-write tokens: summing them
            # again would count them twice.
            input_tokens = add_optional(input_tokens, as_int(usage.get("input_tokens")))
            cached = add_optional(cached, as_int(usage.get("cached_input_tokens")))
            output_tokens = add_optional(output_tokens, as_int(usage.get("output_tokens")))
        elif kind == "turn.failed":
            finished = True
            failure = event.get("error")
            error = (
                str(failure.get("message") or "turn failed") if isinstance(failure, dict) else "turn failed"
            )
        elif kind == "error" and event.get("message"):
            error = str(event["message"])
    if not finished and error is None:
        said = last_words(output)
        error = "codex ended without a turn.completed or turn.failed event" + (f": {said}" if said else "")
    return AgentOutput(
        final_message=clip(final),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached,
        error=clip(error),
    )


ADAPTER = Adapter(
    name="codex",
    arguments=arguments,
    parse=parse,
    key_aliases={KEY_ENV: ("CODEX_API_KEY",), "CODEX_API_KEY": (KEY_ENV,)},
    setup=setup,
)
