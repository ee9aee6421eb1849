"""OpenAI Codex CLI (npm ``@openai/codex``, executable ``codex``).

Command line::

    codex exec --json --sandbox danger-full-access --skip-git-repo-check -- <task>

What the documentation says (looked up 2026-11-25: "Non-interactive mode",
https://developers.openai.com/codex/noninteractive.md, and openai/codex ``docs/exec.md``):

- ``codex exec`` is the non-interactive mode: no approval prompts; progress on stderr, the
  final message on stdout. With a prompt argument and a piped stdin, stdin is appended as
  context; the runner gives the agent ``/dev/null``, so nothing is appended and nothing hangs.
- ``--json`` streams JSON Lines events to stdout: ``thread.started``, ``turn.started``,
  ``turn.completed`` (with ``usage``: ``input_tokens``, ``cached_input_tokens``,
  ``output_tokens``), ``turn.failed`` (with ``error.message``), ``item.started`` /
  ``item.updated`` / ``item.completed`` whose ``item.type`` is ``agent_message`` (``text``),
  ``reasoning``, ``command_execution``, ``file_change``, ``mcp_tool_call``, ``web_search``;
  a top-level ``error`` event carries ``message``. The final answer is the last
  ``agent_message``. Codex does not print a cost.
- ``exec`` runs read-only by default. ``--sandbox workspace-write`` uses Codex's own sandbox
  (Landlock/bubblewrap on Linux), which needs privileges a Fargate task with every
  capability dropped does not have; ``--sandbox danger-full-access`` is documented for
  "controlled environments, such as isolated CI runners or containers" — the one-job task is
  that container. (``--full-auto`` is deprecated.)
- ``--skip-git-repo-check``: the workspace is always a git repository; the flag only keeps a
  misdetected repository from aborting the job.
- The key: ``OPENAI_API_KEY``, or ``CODEX_API_KEY`` for ``codex exec``; the ``openai`` secret
  arrives as ``OPENAI_API_KEY`` (registry ``PROVIDER_KEY_ENV``) and is copied under the other
  name too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from agents.adapters.base import Adapter, AgentOutput, add_optional, as_int, clip, json_objects


def arguments(task: str, scratch: Path, env: Mapping[str, str]) -> list[str]:
    return [
        "exec",
        "--json",
        "--sandbox",
        "danger-full-access",
        "--skip-git-repo-check",
        "--",
        task,
    ]


def parse(output: str) -> AgentOutput:
    final: str | None = None
    error: str | None = None
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
        elif kind == "turn.completed" and isinstance(event.get("usage"), dict):
            usage = event["usage"]
            input_tokens = add_optional(input_tokens, as_int(usage.get("input_tokens")))
            cached = add_optional(cached, as_int(usage.get("cached_input_tokens")))
            output_tokens = add_optional(output_tokens, as_int(usage.get("output_tokens")))
        elif kind == "turn.failed" and isinstance(event.get("error"), dict):
            error = str(event["error"].get("message") or "turn failed")
        elif kind == "error" and event.get("message"):
            error = str(event["message"])
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
    key_aliases={"CODEX_API_KEY": ("OPENAI_API_KEY",)},
)
