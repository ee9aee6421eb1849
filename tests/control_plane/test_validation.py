"""Bad input answers 4xx naming the field, and writes nothing."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from fastapi.testclient import TestClient

from control_plane.validation import UnsafeRepoError, check_repo_url
from tests.control_plane.helpers import make_tenant

SAFE_URLS = [
    "https://github.com/outpost/demo.git",
    "https://gitlab.example.com:8443/group/sub/repo",
    "git@github.com:outpost/demo.git",
    "https://8.8.8.8/org/repo.git",
]
UNSAFE_URLS = [
    "file:///etc/passwd",
    "ext::sh -c touch% /tmp/pwned",
    "-uhttps://github.com/a/b",
    "--upload-pack=touch /tmp/x",
    "http://github.com/a/b.git",
    "ssh://git@github.com/a/b.git",
    "/srv/repos/demo",
    "https://localhost/a/b",
    "https://api.localhost/a/b",
    "https://127.0.0.1/a/b",
    "https://127.1/a/b",
    "https://2130706433/a/b",
    "https://0x7f.0.0.1/a/b",
    "https://10.0.0.5/a/b",
    "https://192.168.1.1/a/b",
    "https://172.16.0.1/a/b",
    "https://169.254.169.254/latest/meta-data",
    "https://169.254.170.2/v2/credentials",
    "https://[::1]/a/b",
    "https://[fd00:ec2::254]/a/b",
    "https://[::ffff:127.0.0.1]/a/b",
    "https://metadata.google.internal/a",
    "https://user:token@github.com/a/b.git",
    "https://github.com/",
    "https://github.com/a/../../etc",
    "git@127.0.0.1:a/b.git",
    "git@github.com:-oProxyCommand=x",
    "git@github.com:/etc/passwd",
    "https://github.com/a/b c",
    "https://github.com/a/b\n",
]


@pytest.mark.parametrize("url", SAFE_URLS)
def test_accept_repo_url(url: str) -> None:
    assert check_repo_url(url) == url


@pytest.mark.parametrize("url", UNSAFE_URLS)
def test_refuse_repo_url(url: str) -> None:
    with pytest.raises(UnsafeRepoError):
        check_repo_url(url)


def test_check_repo_url_never_resolves_names(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("validation must not resolve names")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    assert check_repo_url("https://github.com/a/b.git")


def _count(client: TestClient, tenant: dict) -> int:
    return len(client.get("/dispatches?limit=100", headers=tenant["headers"]).json()["items"])


BAD_BODIES = [
    ({"task": "x"}, "agent"),
    ({"agent": "hal9000", "task": "x"}, "agent"),
    ({"agent": "shell"}, "task"),
    ({"agent": "shell", "task": ""}, "task"),
    ({"agent": "shell", "task": "x" * (32 * 1024 + 1)}, "task"),
    ({"agent": "shell", "task": "x", "repo": {"url": "file:///etc"}}, "repo.url"),
    ({"agent": "shell", "task": "x", "repo": {"url": "https://169.254.169.254/x"}}, "repo.url"),
    (
        {"agent": "shell", "task": "x", "repo": {"url": "https://github.com/a/b", "ref": "--force"}},
        "repo.ref",
    ),
    ({"agent": "shell", "task": "x", "timeout_s": 0}, "timeout_s"),
    ({"agent": "shell", "task": "x", "timeout_s": 3601}, "timeout_s"),  # shell allows at most 3600
    ({"agent": "shell", "task": "x", "labels": {f"k{i}": "v" for i in range(33)}}, "labels"),
    ({"agent": "shell", "task": "x", "labels": {"ok": "v" * 257}}, "labels.ok"),
    ({"agent": "shell", "task": "x", "labels": {"bad key!": "v"}}, "labels"),
    ({"agent": "shell", "task": "x", "priority": 1}, "priority"),
    ({"agent": "shell", "task": 42}, "task"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_refuse_bad_dispatch_naming_field(client: TestClient, tenant: dict, body: dict, field: str) -> None:
    reply = client.post("/dispatch", json=body, headers=tenant["headers"])
    assert reply.status_code == 422, reply.text
    problem = reply.json()
    assert reply.headers["content-type"] == "application/problem+json"
    assert problem["field"] == field
    assert field.split(".")[0] in problem["detail"]
    assert _count(client, tenant) == 0


def test_refuse_agent_not_allowed_for_tenant(client: TestClient) -> None:
    tenant = make_tenant(client, allowed_agents=["claude"])
    reply = client.post("/dispatch", json={"agent": "shell", "task": "ls"}, headers=tenant["headers"])
    assert reply.status_code == 422
    assert reply.json()["field"] == "agent"
    assert _count(client, tenant) == 0
    assert (
        client.post("/dispatch", json={"agent": "claude", "task": "x"}, headers=tenant["headers"]).status_code
        == 202
    )


def test_refuse_body_over_limit_by_content_length(client: TestClient, tenant: dict) -> None:
    reply = client.post(
        "/dispatch",
        content=b"{" + b" " * 70_000 + b"}",
        headers={**tenant["headers"], "content-type": "application/json"},
    )
    assert reply.status_code == 413
    assert reply.json()["field"] == "body"


def test_refuse_streamed_body_over_limit_without_reading_it_all(client: TestClient, tenant: dict) -> None:
    def chunks() -> Any:
        for _ in range(1000):  # 16 MB offered, with no Content-Length
            yield b" " * 16384

    reply = client.post(
        "/dispatch", content=chunks(), headers={**tenant["headers"], "content-type": "application/json"}
    )
    assert reply.status_code == 413
    assert _count(client, tenant) == 0


def test_refuse_malformed_json_naming_body(client: TestClient, tenant: dict) -> None:
    reply = client.post(
        "/dispatch", content=b"{not json", headers={**tenant["headers"], "content-type": "application/json"}
    )
    assert reply.status_code == 422
    assert reply.json()["field"] == "body"
