"""The ``shell`` agent: the task is a shell command, run as ``sh -c -- <task>``.

``--`` ends ``sh``'s own options (dash and bash accept it), so a task that starts with ``-``
is still the command string.

There is no model, so no tokens and no cost; the final message is the last non-empty line
the command printed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from agents.adapters.base import Adapter, AgentOutput, clip, strip_ansi


def arguments(task: str, scratch: Path, env: Mapping[str, str]) -> list[str]:
    return ["--", task]


def parse(output: str) -> AgentOutput:
    lines = [line for line in strip_ansi(output).splitlines() if line.strip()]
    return AgentOutput(final_message=clip(lines[-1][:500]) if lines else None)


ADAPTER = Adapter(name="shell", arguments=arguments, parse=parse)
