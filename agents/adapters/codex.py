"""OpenAI Codex CLI (npm ``@openai/codex``, executable ``codex``).

Command line::

    codex exec --json --dangerously-bypass-approvals-and-sandbox --skip-git-repo-check -- <task>

What the documentation says (openai/codex ``docs/exec.md``, looked up 2026-11-25):

- ``codex exec`` is the non-interactive mode; it never asks for approvals.
- ``--json`` streams JSON Lines events to stdout: ``thread.started``, ``turn.started``,
  ``turn.completed`` (with ``usage``: ``input_tokens``, ``cached_input_tokens``,
  ``output_tokens``), ``turn.failed`` (with ``error.message``), ``item.started`` /
  ``item.updated`` / ``item.completed`` whose ``item.type`` is ``agent_message`` (``text``),
  ``reasoning``, ``command_execution``, ``file_change``, ``mcp_tool_call``, ``web_search``;
  a top-level ``error`` event carries ``message``. The final answer is the last
  ``agent_message``. Codex does not print a cost.
- By default ``exec`` runs read-only; ``--full-auto`` allows workspace writes inside Codex's
  own sandbox (Landlock/bubblewrap on Linux), which needs privileges a Fargate task with all
  capabilities dropped does not have. ``--dangerously-bypass-approvals-and-sandbox`` is meant
  for "environments that are externally sandboxed" — the one-job Fargate task is that sandbox.
- ``--skip-git-repo-check``: the workspace is always a git repository, the flag only keeps a
  misdetected repository from aborting the job.
- ``CODEX_API_KEY`` overrides the key for ``codex exec``; Outpost's ``openai`` secret arrives
  as ``OPENAI_API_KEY`` and is copied under that name too.
"""

from __future__ import annotations

from pathlib import Path

from agents.adapters.base import Adapter, AgentOutput, add_optional, as_int, clip, json_objects


def arguments(task: str, scratch: Path) -> list[str]:
    return [
        "exec",
        "--json",
        "--dangerously-bypass-approvals-and-sandbox",
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
