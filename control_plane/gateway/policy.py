"""Which models a call may name: the agent's list (its settings) and the tenant's.

The agent's list (``allowed_models`` and ``default_model``) binds every call of a run whose
model is pinned: the dispatch named one, or the agent has a default. A dispatch that named
none, of an agent without a default, runs the CLI's own default, which no list can name (as
``POST /dispatch`` has it, docs/agent-settings.md): its calls are not held to the agent's list.
The tenant's ``allowed_models`` binds every call: here the gateway sees the model actually
called, so a restricted tenant's runs stay within its list whatever the CLI picks. Names
match as the price table matches them: case aside, without a provider prefix (aider's
``openai/gpt-4o`` calls the API with ``gpt-4o``; Gemini may say ``models/...``) or a dated
snapshot suffix (``claude-sonnet-4-5-20250929``).
"""

from __future__ import annotations

import re

from agents.agent_settings import AgentSettings
from control_plane.store import TenantRecord

_PROVIDER_PREFIX = re.compile(r"^[a-z0-9_-]+/")
_DATED_SUFFIX = re.compile(r"-\d{8}$")


def model_refusal(
    model: str,
    *,
    agent: str,
    settings: AgentSettings | None,
    tenant: TenantRecord | None,
    dispatch_model: str | None,
) -> str | None:
    """Why ``model`` is refused for this agent and tenant, or None."""
    pinned = dispatch_model is not None or (settings is not None and settings.default_model is not None)
    if pinned and settings is not None:
        default = [settings.default_model] if settings.default_model else []
        allowed = list(dict.fromkeys([*default, *settings.allowed_models]))
        if allowed and not any(same_model(model, name) for name in allowed):
            return f"model {model} is not allowed for agent {agent}; it allows {', '.join(allowed)}"
    if tenant is not None and tenant.allowed_models is not None:
        if not any(same_model(model, name) for name in tenant.allowed_models):
            return f"model {model} is not allowed for this tenant"
    return None


def same_model(requested: str, allowed: str) -> bool:
    return bool(_forms(requested) & _forms(allowed))


def _forms(model: str) -> set[str]:
    name = model.strip().lower()
    bare = _PROVIDER_PREFIX.sub("", name)
    return {form for candidate in (name, bare) for form in (candidate, _DATED_SUFFIX.sub("", candidate))}
