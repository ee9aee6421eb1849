"""Agent adapters: one module per agent in the registry.

Each module documents the CLI's current non-interactive command line, where that was looked
up, and parses the CLI's output (final message, tokens, cost). ``adapter_for(name)`` is what
the runner uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from agents.adapters import aider, claude, codex, gemini, grok, shell
from agents.adapters.base import Adapter, AgentOutput

ADAPTERS: Mapping[str, Adapter] = MappingProxyType(
    {module.ADAPTER.name: module.ADAPTER for module in (claude, codex, gemini, aider, grok, shell)}
)


def adapter_for(agent: str) -> Adapter:
    try:
        return ADAPTERS[agent]
    except KeyError:
        raise KeyError(f"no adapter for agent {agent!r}; known: {', '.join(sorted(ADAPTERS))}") from None


__all__ = ["ADAPTERS", "Adapter", "AgentOutput", "adapter_for"]
