"""A dispatch's repository must be on a host its agent's tasks can reach: the environment's
egress allowlist (OUTPOST_EGRESS_ALLOWLIST) plus the agent's own additions. Without one (local
mode) any public host passes, as before."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from control_plane.api.repos import accepted_repo_url
from control_plane.bootstrap import Resources
from control_plane.problems import Problem
from control_plane.settings import Settings
from tests.control_plane.helpers import settings_for

ALLOWLIST = ["github.com", "*.gitlab.example"]


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """No repository host resolves (the emulator on loopback still does): the resolution check
    passes whatever this machine's resolver answers."""
    real = socket.getaddrinfo

    def nxdomain(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ("127.0.0.1", "localhost"):
            return real(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", nxdomain)


@pytest.fixture
def settings(moto_endpoint: str, shared_resources: Resources) -> Settings:
    return settings_for(moto_endpoint, shared_resources, egress_allowlist=ALLOWLIST)


def post(client: TestClient, tenant: dict[str, Any], url: str, agent: str = "shell") -> Any:
    return client.post(
        "/dispatch", json={"agent": agent, "task": "ls", "repo": {"url": url}}, headers=tenant["headers"]
    )


def count(client: TestClient, tenant: dict[str, Any]) -> int:
    return len(client.get("/dispatches?limit=100", headers=tenant["headers"]).json()["items"])


@pytest.mark.parametrize(
    "url",
    ["https://github.com/acme/app.git", "https://code.gitlab.example/group/app", "https://GitHub.com/a/b"],
)
def test_a_repository_on_the_allowlist_is_accepted(
    client: TestClient, tenant: dict[str, Any], url: str
) -> None:
    reply = post(client, tenant, url)
    assert reply.status_code == 202, reply.text


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://bitbucket.org/acme/app.git", "bitbucket.org"),
        ("https://gitlab.example/group/app", "gitlab.example"),  # *.gitlab.example is its subdomains
        ("https://github.com.evil.example/acme/app", "github.com.evil.example"),
        ("https://api.github.com/acme/app", "api.github.com"),
        ("https://8.8.8.8/acme/app.git", "8.8.8.8"),  # an address is never on a list of names
    ],
)
def test_a_repository_off_the_allowlist_is_refused_naming_the_setting(
    client: TestClient, tenant: dict[str, Any], url: str, host: str
) -> None:
    reply = post(client, tenant, url)
    assert reply.status_code == 422, reply.text
    problem = reply.json()
    assert problem["field"] == "repo.url"
    assert f"host {host} is not on the egress allowlist" in problem["detail"]
    assert (
        "egress_allowlist in cdk.json" in problem["detail"]
        and "OUTPOST_EGRESS_ALLOWLIST" in problem["detail"]
    )
    assert "github.com, *.gitlab.example" in problem["detail"]  # what the agent may reach instead
    assert count(client, tenant) == 0


def test_an_agent_may_also_use_the_hosts_the_registry_adds_for_it(
    client: TestClient, tenant: dict[str, Any]
) -> None:
    # aider's registry entry adds PyPI (agents/registry.py); the shell agent's adds nothing
    assert post(client, tenant, "https://pypi.org/simple/acme", agent="aider").status_code == 202
    reply = post(client, tenant, "https://pypi.org/simple/acme", agent="shell")
    assert (
        reply.status_code == 422 and "host pypi.org is not on the egress allowlist" in reply.json()["detail"]
    )


def test_an_agent_may_also_use_the_hosts_its_agent_settings_add(settings: Settings) -> None:
    """cdk.json's agent_settings.<agent>.egress: the same list the agent's proxy listener has."""
    configured = settings.model_copy(update={"agent_settings": {"codex": {"egress": ["codeberg.org"]}}})
    assert accepted_repo_url("https://codeberg.org/acme/app.git", configured, agent="codex")
    with pytest.raises(Problem, match="host codeberg.org is not on the egress allowlist"):
        accepted_repo_url("https://codeberg.org/acme/app.git", configured, agent="claude")


def test_the_operators_github_is_held_to_the_allowlist_too(settings: Settings) -> None:
    """The fleet stack puts the publishing GitHub's host on the list; a host it left off is refused."""
    ghe = settings.model_copy(update={"github_url": "https://ghe.corp.example"})
    with pytest.raises(Problem) as refused:
        accepted_repo_url("https://ghe.corp.example/acme/app", ghe, agent="shell")
    assert "host ghe.corp.example is not on the egress allowlist" in refused.value.detail
    listed = ghe.model_copy(update={"egress_allowlist": [*ALLOWLIST, "ghe.corp.example"]})
    assert accepted_repo_url("https://ghe.corp.example/acme/app", listed, agent="shell")


def test_without_an_allowlist_any_public_host_passes_as_before(
    moto_endpoint: str, shared_resources: Resources
) -> None:
    local = settings_for(moto_endpoint, shared_resources)
    assert local.egress_allowlist is None
    assert accepted_repo_url("https://bitbucket.org/acme/app.git", local, agent="shell")
    with pytest.raises(Problem, match="loopback, private"):  # and the other checks still hold
        accepted_repo_url("https://10.0.0.5/acme/app.git", local, agent="shell")


def test_an_empty_allowlist_refuses_every_host(settings: Settings) -> None:
    closed = settings.model_copy(update={"egress_allowlist": []})
    with pytest.raises(Problem, match="shell may reach nothing"):
        accepted_repo_url("https://github.com/acme/app", closed, agent="shell")


def test_the_variable_is_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTPOST_EGRESS_ALLOWLIST", '["github.com", "*.npmjs.org"]')
    assert Settings().egress_allowlist == ["github.com", "*.npmjs.org"]
    monkeypatch.setenv("OUTPOST_EGRESS_ALLOWLIST", '["https://github.com"]')
    with pytest.raises(
        ValidationError, match=r"OUTPOST_EGRESS_ALLOWLIST: 'https://github.com': not a host name"
    ):
        Settings()
