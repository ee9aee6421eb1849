"""Host patterns of the egress allowlist: what is a pattern, and what a pattern matches."""

from __future__ import annotations

import pytest

from agents.egress import check_patterns, host_allowed, host_matches, merged, pattern_problem
from agents.registry import AGENTS


@pytest.mark.parametrize("pattern", ["github.com", "*.github.com", "files.pythonhosted.org", "a-1.b.example"])
def test_pattern_problem_accepts_host_names_and_leading_wildcards(pattern: str) -> None:
    assert pattern_problem(pattern) is None


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("https://github.com", "not a host name"),
        ("github.com:443", "not a host name"),
        ("github.com/acme", "not a host name"),
        ("GitHub.com", "lower-case"),
        ("", "lower-case"),
        ("*", "a wildcard"),
        ("*.com", "too broad"),
        ("localhost", "a single label"),
        ("git*.example.com", "wildcard may only be the first label"),
        ("*.*.example.com", "wildcard may only be the first label"),
        ("10.0.0.1", "an address"),
        ("-bad.example.com", "not a host name"),
        ("a..example.com", "not a host name"),
        (42, "a string"),
    ],
)
def test_pattern_problem_refuses_what_is_not_a_host_pattern(pattern: object, problem: str) -> None:
    found = pattern_problem(pattern)
    assert found is not None and problem in found


def test_check_patterns_names_the_first_bad_pattern() -> None:
    assert check_patterns(["github.com", "*.npmjs.org"]) == ("github.com", "*.npmjs.org")
    with pytest.raises(ValueError, match=r"^'https://x.org': not a host name"):
        check_patterns(["github.com", "https://x.org"])


@pytest.mark.parametrize(
    ("host", "pattern", "matches"),
    [
        ("github.com", "github.com", True),
        ("GitHub.com.", "github.com", True),  # case and the root's dot do not matter
        ("api.github.com", "github.com", False),
        ("api.github.com", "*.github.com", True),
        ("a.b.github.com", "*.github.com", True),  # any depth, as DNS Firewall reads it
        ("github.com", "*.github.com", False),  # the wildcard is for subdomains only
        ("evilgithub.com", "*.github.com", False),
        ("github.com.evil.org", "github.com", False),
        ("github.com.evil.org", "*.github.com", False),
    ],
)
def test_host_matches_as_dns_firewall_does(host: str, pattern: str, matches: bool) -> None:
    assert host_matches(host, pattern) is matches


def test_host_allowed_and_merged_keep_order_and_drop_repeats() -> None:
    patterns = merged(["github.com", "pypi.org"], ("pypi.org", "*.npmjs.org"))
    assert patterns == ("github.com", "pypi.org", "*.npmjs.org")
    assert host_allowed("registry.npmjs.org", patterns) and not host_allowed("npmjs.org", patterns)
    assert not host_allowed("example.com", ())


def test_agents_add_only_valid_patterns_and_aider_adds_pypi() -> None:
    for agent in AGENTS.values():
        assert check_patterns(agent.egress) == agent.egress
    assert {"pypi.org", "files.pythonhosted.org"} <= set(AGENTS["aider"].egress)
    assert AGENTS["claude"].egress == ()  # its model calls go through the gateway
