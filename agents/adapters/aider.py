"""Aider (PyPI ``aider-chat``, executable ``aider``).

Command line::

    aider --message=<task> --yes-always --no-pretty --no-stream --no-auto-commits
          --no-dirty-commits --no-gitignore --no-check-update --no-show-release-notes
          --analytics-disable --no-restore-chat-history
          --input-history-file <scratch>/aider.input.history
          --chat-history-file <scratch>/aider.chat.history.md

What the documentation and source say (looked up 2026-11-25):

- "Scripting aider" (https://aider.chat/docs/scripting.html): ``--message`` sends one
  instruction, applies the edits and exits; ``--yes-always`` answers every confirmation.
- Options reference (Aider-AI/aider ``aider/website/docs/config/options.md``):
  ``--no-pretty`` (no colours), ``--no-stream``, ``--no-auto-commits`` and
  ``--no-dirty-commits`` (Outpost collects the change as a patch against the base commit;
  commits would be included anyway), ``--no-gitignore`` (aider would otherwise add
  ``.aider*`` to the repository's ``.gitignore``, which would land in the patch),
  ``--input-history-file`` / ``--chat-history-file`` (defaults inside the repository; Outpost
  puts them in scratch space so they stay out of the patch), ``--no-check-update``,
  ``--no-show-release-notes``, ``--analytics-disable``, ``--no-restore-chat-history``.
- Aider prints no JSON. After each model reply it prints the usage report built in
  ``aider/coders/base_coder.py``::

      Tokens: 2.4k sent, 1.1k cache write, 3.2k cache hit, 312 received. Cost: $0.02 message, $0.05 session.

  (the cache parts only when non-zero; the cost part only when the model's price is known).
  Counts are rounded by ``format_tokens``: below 1000 exact, below 10000 one decimal ``k``,
  else whole ``k`` — so token totals are approximate. The session cost is cumulative.
- The key comes from ``OPENAI_API_KEY`` (the registry gives aider the ``openai`` secret).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from agents.adapters.base import Adapter, AgentOutput, add_optional, clip, strip_ansi


def arguments(task: str, scratch: Path, env: Mapping[str, str]) -> list[str]:
    return [
        f"--message={task}",
        "--yes-always",
        "--no-pretty",
        "--no-stream",
        "--no-auto-commits",
        "--no-dirty-commits",
        "--no-gitignore",
        "--no-check-update",
        "--no-show-release-notes",
        "--analytics-disable",
        "--no-restore-chat-history",
        "--input-history-file",
        str(scratch / "aider.input.history"),
        "--chat-history-file",
        str(scratch / "aider.chat.history.md"),
    ]


_COUNT = r"([\d.,]+[kKmM]?)"
_TOKENS = re.compile(
    rf"Tokens: {_COUNT} sent(?:, {_COUNT} cache write)?(?:, {_COUNT} cache hit)?, {_COUNT} received\."
)
_COST = re.compile(r"Cost: \$([\d.]+) message, \$([\d.]+) session\.")
# Lines aider prints about its own work, not part of the model's answer.
_STATUS_PREFIXES = (
    "Aider v",
    "Main model:",
    "Model:",
    "Weak model:",
    "Editor model:",
    "Git repo:",
    "Repo-map:",
    "Added ",
    "Applied edit to ",
    "Commit ",
    "Use /help",
    "https://aider.chat",
)


def _count(text: str | None) -> int | None:
    if not text:
        return None
    text = text.replace(",", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    number = text[:-1] if scale != 1 else text
    try:
        return round(float(number) * scale)
    except ValueError:
        return None


def _prose(lines: list[str]) -> list[str]:
    """The model's words without aider's status lines and without the edit blocks."""
    kept: list[str] = []
    in_fence = in_edit = False
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("```"):
            in_fence = not in_fence
            continue
        if stripped.startswith("<<<<<<< SEARCH"):
            in_edit = True
            continue
        if stripped.startswith(">>>>>>> REPLACE"):
            in_edit = False
            continue
        if in_fence or in_edit or line.startswith(_STATUS_PREFIXES):
            continue
        following = lines[index + 1].strip() if index + 1 < len(lines) else ""
        if stripped and " " not in stripped and following.startswith(("```", "<<<<<<< SEARCH")):
            continue  # the file name aider prints above an edit block
        kept.append(line)
    return kept


def parse(output: str) -> AgentOutput:
    lines = strip_ansi(output).splitlines()
    sent = received = cache_hit = None
    cost = None
    report_lines: list[int] = []
    for index, line in enumerate(lines):
        tokens = _TOKENS.search(line)
        if tokens:
            report_lines.append(index)
            sent = add_optional(sent, _count(tokens.group(1)))
            cache_hit = add_optional(cache_hit, _count(tokens.group(3)))
            received = add_optional(received, _count(tokens.group(4)))
        money = _COST.search(line)
        if money:
            cost = float(money.group(2))

    final = None
    if report_lines:
        # The answer is what the model printed between the previous usage report and the last.
        start = report_lines[-2] + 1 if len(report_lines) > 1 else 0
        final = "\n".join(_prose(lines[start : report_lines[-1]]))
    return AgentOutput(
        final_message=clip(final),
        # aider's "sent" excludes cache hits (Anthropic semantics); Outpost counts them in.
        input_tokens=add_optional(sent, cache_hit),
        output_tokens=received,
        cached_input_tokens=cache_hit,
        cost_usd=cost,
    )


ADAPTER = Adapter(name="aider", arguments=arguments, parse=parse)
