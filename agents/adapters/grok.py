"""Grok CLI (npm ``@vibe-kit/grok-cli``, executable ``grok``).

Command line::

    grok --prompt=<task>

What the source says (superagent-ai/grok-cli ``src/index.ts`` and README, the npm package
``@vibe-kit/grok-cli``; looked up 2026-11-25):

- ``-p``/``--prompt <prompt>`` "process a single prompt and exit (headless mode)". Headless
  mode auto-approves every operation (``confirmationService.setSessionFlag("allOperations",
  true)``), works in the current directory (``-d`` changes it) and, when done, prints the
  conversation as OpenAI-style chat messages, one JSON object per line:
  ``{"role": "user"|"assistant"|"tool", "content": ..., "tool_calls"?, "tool_call_id"?}``.
  On failure it prints ``{"role": "assistant", "content": "Error: ..."}`` and exits 1.
  The final answer is the last assistant message with content. It prints no token counts
  or cost.
- The key comes from ``GROK_API_KEY`` (or ``--api-key``, which would put it on the command
  line; Outpost never does that), the name the registry gives the ``xai`` secret
  (``PROVIDER_KEY_ENV``); a key supplied as ``XAI_API_KEY`` is copied under that name.

- Model and endpoint (Outpost's ``OUTPOST_AGENT_MODEL`` / ``OUTPOST_AGENT_BASE_URL``):
  ``GROK_MODEL`` and ``GROK_BASE_URL`` (``dist/index.js``, ``dist/grok/client.js``; default
  ``https://api.x.ai/v1``, an OpenAI-compatible Chat Completions API, not streamed in
  headless mode). Retries are the OpenAI SDK's default (2, a few seconds).

What 0.0.34 does that a job does not want (seen running it against a loopback server):

- It creates ``.grok/settings.json`` in the working directory (its project settings,
  ``dist/utils/settings-manager.js``) and ``~/.grok/user-settings.json`` in the job's HOME.
  The runner lists the first in the checkout's ``.git/info/exclude`` (``ignored``) so it
  stays out of the patch.
- A provider error (401, 429 after retries, 500, a malformed answer) becomes the assistant
  message "Sorry, I encountered an error: ..." and the CLI exits 0: the parser reports it
  as the error, and the runner fails the job.

Watch: ``@vibe-kit/grok-cli`` ends at 0.0.34, the version the agent image pins
(agents/images/grok). The project continues as npm ``grok-dev`` (1.x, same ``grok``
executable), whose headless mode prints human-readable text, or with ``--format json`` an
NDJSON stream of step events (``step_start``, ``text``, ``tool_use``, ``step_finish``,
``error``; superagent-ai/grok-cli README). xAI also ships its own "Grok Build" CLI, also
``grok`` (``grok -p <prompt> --output-format json --always-approve``,
https://docs.x.ai/build/cli/headless-scripting). Moving the image to either means changing
this module's flags and parser in the same change.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from agents.adapters.base import Adapter, AgentOutput, clip, json_objects
from agents.agent_settings import BASE_URL_ENV, MODEL_ENV


def arguments(task: str, scratch: Path, env: Mapping[str, str]) -> list[str]:
    return [f"--prompt={task}"]


def setup(home: Path, env: Mapping[str, str]) -> dict[str, str]:
    names = {MODEL_ENV: "GROK_MODEL", BASE_URL_ENV: "GROK_BASE_URL"}
    return {name: env[ours] for ours, name in names.items() if env.get(ours)}


# How the CLI words a failure: its own ("Error: ...") and the model call's.
_FAILURES = ("Error: ", "Sorry, I encountered an error: ")


def parse(output: str) -> AgentOutput:
    final: str | None = None
    for message in json_objects(output):
        content = message.get("content")
        if message.get("role") == "assistant" and isinstance(content, str) and content.strip():
            final = content
    error = final if final is not None and final.startswith(_FAILURES) else None
    return AgentOutput(final_message=clip(final), error=clip(error))


ADAPTER = Adapter(
    name="grok",
    arguments=arguments,
    parse=parse,
    key_aliases={"GROK_API_KEY": ("XAI_API_KEY",)},
    setup=setup,
    ignored=("/.grok/settings.json",),
)
