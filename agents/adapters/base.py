"""What an agent adapter is, and the parsing helpers the adapters share.

An adapter turns a task into the agent CLI's non-interactive command line (the registry's
``command`` is the executable, the adapter adds the flags) and reads the CLI's combined
output back into an :class:`AgentOutput`: the final message, token usage and cost where the
CLI reports them. Parsers never raise on unexpected output: they return what they found.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.registry import AGENTS

FINAL_MESSAGE_MAX_CHARS = 4000


@dataclass(frozen=True)
class AgentOutput:
    """What an adapter read from the agent's output; None where the CLI does not say.

    ``input_tokens`` counts every prompt token, cached ones included; ``cached_input_tokens``
    is the part served from the provider's prompt cache.
    """

    final_message: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    cost_usd: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Adapter:
    name: str
    # Arguments after the registry's command: (task, scratch directory, the agent's
    # environment) -> argv tail. The environment carries OUTPOST_AGENT_MODEL and
    # OUTPOST_AGENT_BASE_URL, which each adapter translates into what its CLI reads.
    arguments: Callable[[str, Path, Mapping[str, str]], list[str]]
    parse: Callable[[str], AgentOutput]
    # Environment variable the CLI reads -> other names the provider key may arrive under.
    key_aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Variables the CLI should see unless the image or task sets them otherwise.
    defaults: Mapping[str, str] = field(default_factory=dict)
    # Writes the CLI's configuration files into the job's own HOME before the agent starts
    # and returns extra variables for the agent: (home, the agent's environment) -> variables.
    setup: Callable[[Path, Mapping[str, str]], dict[str, str]] | None = None
    # Files the CLI keeps in the repository for itself (caches, settings), as .gitignore
    # patterns: the runner lists them in the checkout's .git/info/exclude so they stay out of
    # the patch, without touching the repository's own .gitignore.
    ignored: tuple[str, ...] = ()

    def command(self, task: str, *, scratch: Path, env: Mapping[str, str]) -> list[str]:
        return [*AGENTS[self.name].command, *self.arguments(task, scratch, env)]

    def prepare(self, home: Path, env: Mapping[str, str]) -> dict[str, str]:
        """Config files for the CLI under ``home``; the variables to add to its environment."""
        return self.setup(home, env) if self.setup is not None else {}

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """The agent's environment: ``env`` plus the key under the name the CLI reads."""
        result = {**self.defaults, **env}
        for target, sources in self.key_aliases.items():
            if result.get(target):
                continue
            for source in sources:
                if result.get(source):
                    result[target] = result[source]
                    break
        return result


def json_objects(output: str) -> Iterator[dict[str, Any]]:
    """Every JSON object in ``output``: the whole text if it is one object, else one per line.

    Lines that are not JSON objects (stderr noise, progress text) are skipped.
    """
    text = output.strip()
    if text.startswith("{"):
        try:
            whole = json.loads(text)
        except ValueError:
            pass
        else:
            if isinstance(whole, dict):
                yield whole
                return
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value


def as_int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def add_optional(*values: int | None) -> int | None:
    """Sum of the values that are known; None when none is."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def clip(message: str | None) -> str | None:
    if message is None:
        return None
    message = message.strip()
    if not message:
        return None
    if len(message) > FINAL_MESSAGE_MAX_CHARS:
        return message[: FINAL_MESSAGE_MAX_CHARS - 1] + "…"
    return message


def last_words(output: str) -> str | None:
    """The last line that is not a JSON event: what the CLI said when it gave up."""
    lines = [
        line.strip() for line in output.splitlines() if line.strip() and not line.lstrip().startswith("{")
    ]
    return strip_ansi(lines[-1]) if lines else None


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)
