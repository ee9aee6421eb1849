"""Aider (PyPI ``aider-chat``, executable ``aider``).

Command line::

    aider --message=<task> --yes-always --no-pretty --no-stream --no-auto-commits
          --no-dirty-commits --no-gitignore --no-check-update --no-show-release-notes
          --no-analytics --no-fancy-input --no-show-model-warnings --no-restore-chat-history
          --input-history-file <scratch>/aider.input.history
          --chat-history-file <scratch>/aider.chat.history.md [--model <model>]

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
- Model and endpoint (Outpost's ``OUTPOST_AGENT_MODEL`` / ``OUTPOST_AGENT_BASE_URL``):
  ``--model <name>`` (litellm names: ``openai/gpt-4o``, ``anthropic/...``) and
  ``OPENAI_API_BASE`` (an OpenAI-compatible endpoint, ``.../v1``).

What aider 0.86.2 does that a job does not want (seen running it against a loopback server):

- ``--analytics-disable`` prints "Analytics have been permanently disabled." before the
  answer; ``--no-analytics`` turns analytics off without a word (``aider/main.py``).
- Without a terminal, prompt_toolkit warns "Input is not a terminal"; ``--no-fancy-input``
  reads plain input instead (nothing is read: ``--yes-always`` answers).
- Model warnings (unknown context size or price) print and may offer to open a web page:
  ``--no-show-model-warnings``.
- Aider downloads litellm's price list from raw.githubusercontent.com into
  ``~/.aider/caches/model_prices_and_context_window.json`` whenever that file is missing,
  empty or a day old (``aider/models.py`` ``ModelInfoManager``): egress the job does not
  need, and its connection error lands in the output. The adapter writes a fresh non-empty
  file there in the job's own HOME, so aider falls back to the price list litellm ships
  (``LITELLM_LOCAL_MODEL_COST_MAP=True`` keeps litellm from downloading it too).
- The repo map's cache ``.aider.tags.cache.v4/`` is written into the repository;
  ``--no-gitignore`` (which keeps aider's hands off the user's ``.gitignore``) means nothing
  hides it, so the runner lists it in the checkout's ``.git/info/exclude`` (``ignored``).
- A provider error (401, 429 after its retries, a malformed answer) is printed as
  ``litellm.<Name>Error: ...`` and aider still exits 0: the parser reports it as the error,
  and the runner fails the job. Aider retries retryable errors with a doubling delay up to
  a fixed 60 s step (``aider/models.py`` ``RETRY_TIMEOUT``, no option): about two minutes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from agents.adapters.base import Adapter, AgentOutput, add_optional, clip, strip_ansi
from agents.agent_settings import BASE_URL_ENV, MODEL_ENV


def arguments(task: str, scratch: Path, env: Mapping[str, str]) -> list[str]:
    model = env.get(MODEL_ENV)
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
        "--no-analytics",
        "--no-fancy-input",
        "--no-show-model-warnings",
        "--no-restore-chat-history",
        "--input-history-file",
        str(scratch / "aider.input.history"),
        "--chat-history-file",
        str(scratch / "aider.chat.history.md"),
        *(["--model", model] if model else []),
    ]


PRICE_CACHE = Path(".aider/caches/model_prices_and_context_window.json")


def setup(home: Path, env: Mapping[str, str]) -> dict[str, str]:
    # A fresh, non-empty price cache: aider then never downloads the list (see above).
    cache = home / PRICE_CACHE
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text('{"outpost": "aider uses the price list litellm ships"}\n')
    return {"OPENAI_API_BASE": env[BASE_URL_ENV]} if env.get(BASE_URL_ENV) else {}


_COUNT = r"([\d.,]+[kKmM]?)"
_TOKENS = re.compile(
    rf"Tokens: {_COUNT} sent(?:, {_COUNT} cache write)?(?:, {_COUNT} cache hit)?, {_COUNT} received\."
)
_COST = re.compile(r"Cost: \$([\d.]+) message, \$([\d.]+) session\.")
# How aider prints a provider error: litellm's exception, wrapped at the console's width.
_ERROR = re.compile(r"^litellm\.\w+: ")
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


def _prose(lines: list[str], names: set[str]) -> list[str]:
    """The model's words without aider's status lines, without the edit blocks and without
    the ``names`` of edited files aider prints alone (when it adds a file the model edits to
    the chat, before asking the model again)."""
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
        if in_fence or in_edit or line.startswith(_STATUS_PREFIXES) or stripped in names:
            continue
        following = lines[index + 1].strip() if index + 1 < len(lines) else ""
        if stripped and " " not in stripped and following.startswith(("```", "<<<<<<< SEARCH")):
            continue  # the file name aider prints above an edit block
        kept.append(line)
    return kept


def _last_error(lines: list[str]) -> str | None:
    """The provider error aider printed last, unless a model answer came after it."""
    error: str | None = None
    for index, line in enumerate(lines):
        if _TOKENS.search(line):
            error = None  # a retry that worked
        elif _ERROR.match(line):
            block = [line.strip()]
            for following in lines[index + 1 :]:
                if not following.strip() or following.startswith("Retrying in "):
                    break
                block.append(following.strip())
            error = " ".join(block)
    return error


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
        edited = {
            line.strip().removeprefix("Applied edit to ")
            for line in lines
            if line.startswith("Applied edit to ")
        }
        final = "\n".join(_prose(lines[start : report_lines[-1]], edited))
    return AgentOutput(
        final_message=clip(final),
        error=clip(_last_error(lines)),
        # aider's "sent" excludes cache hits (Anthropic semantics); Outpost counts them in.
        input_tokens=add_optional(sent, cache_hit),
        output_tokens=received,
        cached_input_tokens=cache_hit,
        cost_usd=cost,
    )


ADAPTER = Adapter(
    name="aider",
    arguments=arguments,
    parse=parse,
    defaults={"LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    setup=setup,
    ignored=("/.aider.tags.cache.v*/",),
)
