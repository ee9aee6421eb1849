"""How the agent reaches its model: through the model gateway, with its gateway token.

A claim answer carries the attempt's gateway token (docs/model-gateway.md). The agent then
gets that token, and nothing else, under the name its CLI reads its provider key from
(``PROVIDER_KEY_ENV``), and ``OUTPOST_AGENT_BASE_URL`` pointing at the gateway's route for its
provider, in the form its CLI's base-URL setting takes (agents/endpoints.py). Every provider
key variable the task may still hold (an older task definition that injects the secret, an
alias such as ``CODEX_API_KEY``) is removed: a real key never reaches the agent.

A claim answer without a gateway token (a control plane that has none) leaves the agent with
the task's own key and endpoint settings, as before the gateway.

The gateway is reached directly, never through the task's egress proxy: when the task has a
proxy variable, the gateway's host joins ``NO_PROXY`` (both spellings) by its exact name. The
task definitions' ``NO_PROXY`` names the VPC's internal domain (``outpost.internal``), which
most clients take to cover its subdomains, but Gemini CLI matches a NO_PROXY entry without a
leading dot as that exact host only (undici's rule) and sends even plain-HTTP requests to
``HTTPS_PROXY``; without the exact name its model calls went to the proxy, which refuses them.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from agents.adapters import ADAPTERS
from agents.agent_settings import BASE_URL_ENV
from agents.endpoints import agent_base_url
from agents.registry import AGENTS, PROVIDER_KEY_ENV

# Every name a provider key may arrive under: the CLIs' own and the adapters' aliases.
KEY_VARIABLES = (
    frozenset(PROVIDER_KEY_ENV.values())
    | frozenset(
        name
        for adapter in ADAPTERS.values()
        for target, sources in adapter.key_aliases.items()
        for name in (target, *sources)
    )
    | {"ANTHROPIC_AUTH_TOKEN"}
)  # Claude Code's bearer-token alternative to the key
PROXY_URL_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
NO_PROXY_VARIABLES = ("NO_PROXY", "no_proxy")


def gateway_environment(
    env: Mapping[str, str], *, agent: str, token: str | None, gateway_url: str
) -> dict[str, str]:
    """``env`` with the gateway as the agent's provider (unchanged without a token)."""
    secret = AGENTS[agent].secret if agent in AGENTS else None
    base_url = agent_base_url(gateway_url, agent)
    if token is None or secret is None or base_url is None:
        return dict(env)
    result = {name: value for name, value in env.items() if name not in KEY_VARIABLES}
    result[PROVIDER_KEY_ENV[secret]] = token
    result[BASE_URL_ENV] = base_url
    result.update(_bypassing(result, urlsplit(gateway_url).hostname))
    return result


def _bypassing(env: Mapping[str, str], host: str | None) -> dict[str, str]:
    """``NO_PROXY`` and ``no_proxy`` with ``host`` as an entry of its own, when ``env`` sends
    anything through a proxy; nothing to change otherwise."""
    if not host or not any(env.get(name) for name in PROXY_URL_VARIABLES):
        return {}
    current = next((env[name] for name in NO_PROXY_VARIABLES if env.get(name)), "")
    changed = {}
    for name in NO_PROXY_VARIABLES:
        value = env.get(name) or current
        entries = [entry.strip().lower() for entry in value.split(",")]
        changed[name] = value if host.lower() in entries else ",".join(filter(None, [value, host]))
    return changed
