"""Where each agent's CLI reaches its model: the gateway's route per provider, and the part of
the provider's URL that each CLI's base-URL setting includes.

The model gateway (control_plane/gateway, docs/model-gateway.md) serves each provider's API
under ``<gateway URL>/<route>``, with the API's own paths below it (``/v1/messages``,
``/v1/responses``, ``/v1beta/models/...``). The CLIs differ in how much of that path their
base-URL setting takes: Claude Code and the Gemini CLI take the API root and append
``/v1/...`` or ``/v1beta/...`` themselves; codex, aider and grok take the root up to ``/v1``.
``API_PATH`` says which; the runner builds the agent's ``OUTPOST_AGENT_BASE_URL`` from it, and
the gateway turns an operator's ``base_url`` setting back into the provider's root with it.

Importable without aws-cdk-lib, like the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from agents.registry import AGENTS

# Provider secret (agents/registry.py PROVIDER_SECRETS) -> the gateway's route for its API.
GATEWAY_ROUTES: Mapping[str, str] = MappingProxyType(
    {"anthropic": "anthropic", "openai": "openai", "google": "gemini", "xai": "xai"}
)
# What an agent's base-URL setting holds after the provider's API root ("" for the root).
API_PATH: Mapping[str, str] = MappingProxyType({"codex": "/v1", "aider": "/v1", "grok": "/v1"})


def gateway_route(agent: str) -> str | None:
    """The gateway route of the agent's provider; None for an agent without one (shell)."""
    secret = AGENTS[agent].secret if agent in AGENTS else None
    return GATEWAY_ROUTES[secret] if secret else None


def agent_base_url(gateway_url: str, agent: str) -> str | None:
    """The base URL the agent's CLI gets when it reaches its model through the gateway."""
    route = gateway_route(agent)
    if route is None:
        return None
    return f"{gateway_url.rstrip('/')}/{route}{API_PATH.get(agent, '')}"


def api_root(base_url: str, agent: str) -> str:
    """The provider's API root for an operator's ``base_url`` setting of ``agent`` (which
    holds the root plus the agent's ``API_PATH``, e.g. ``https://host/v1`` for codex)."""
    url = base_url.rstrip("/")
    suffix = API_PATH.get(agent, "")
    if suffix and url.endswith(suffix):
        url = url[: -len(suffix)]
    return url
