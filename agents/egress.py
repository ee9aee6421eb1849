"""Where agent tasks may connect: host patterns, checked once and matched the same way everywhere.

An environment's ``egress_allowlist`` (cdk.json, stacks/config.py) and each agent's ``egress``
additions (agents/registry.py) are lists of host patterns: a host name (``pypi.org``) or a
wildcard over its subdomains (``*.github.com``, which matches ``api.github.com`` and
``a.b.github.com`` but not ``github.com`` itself). That is the meaning Route 53 Resolver DNS
Firewall gives a domain-list entry, and the DNS Firewall is what enforces the list
(constructs/dns_firewall.py, docs/egress.md); the control plane refuses a repository whose host
no pattern matches (control_plane/api/repos.py) with the same ``host_allowed``.

Importable without aws-cdk-lib: the control plane reads it at run time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_PATTERN_CHARS = 253
# The variables that send an agent's HTTPS through its egress proxy listener
# (stacks/egress.py sets them in the task definitions).
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def pattern_problem(pattern: object) -> str | None:
    """Why ``pattern`` is not a host pattern, or None when it is one."""
    if not isinstance(pattern, str):
        return "a host pattern is a string"
    if pattern != pattern.lower() or not pattern or len(pattern) > MAX_PATTERN_CHARS:
        return f"a lower-case host name of at most {MAX_PATTERN_CHARS} characters"
    host = pattern.removeprefix("*.")
    if "*" in host:
        return "a wildcard may only be the first label, as in *.example.com"
    labels = host.split(".")
    if not all(_LABEL.match(label) for label in labels):
        return "not a host name (letters, digits and hyphens between dots; no scheme, port or path)"
    if labels[-1].isdigit():
        return "an address, not a host name: the allowlist names hosts"
    if len(labels) < 2:
        if pattern.startswith("*."):
            return "too broad: a wildcard covers the subdomains of a domain, as in *.example.com"
        return "a single label; name a host such as example.com"
    return None


def check_patterns(patterns: Iterable[object]) -> tuple[str, ...]:
    """The patterns, each checked; raises ValueError naming the first bad one."""
    checked = []
    for pattern in patterns:
        problem = pattern_problem(pattern)
        if problem is not None:
            raise ValueError(f"{pattern!r}: {problem}")
        checked.append(str(pattern))
    return tuple(checked)


def host_matches(host: str, pattern: str) -> bool:
    """Whether ``host`` is ``pattern`` or, for ``*.suffix``, a name below ``suffix``."""
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    return any(host_matches(host, pattern) for pattern in patterns)


def merged(*lists: Iterable[str]) -> tuple[str, ...]:
    """The patterns of every list, in order, each once."""
    return tuple(dict.fromkeys(pattern for patterns in lists for pattern in patterns))
