"""Bad input answers 4xx naming the field, and writes nothing."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from control_plane.validation import UnsafeRepoError, check_repo_resolution, check_repo_url
from tests.control_plane.helpers import make_tenant

SAFE_URLS = [
    "https://github.com/outpost/demo.git",
    "https://gitlab.example.com:8443/group/sub/repo",
    "https://8.8.8.8/org/repo.git",
    "https://[2606:4700:4700::1111]/org/repo.git",
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
    # IPv6 forms that embed an IPv4 address (here the metadata service, 169.254.169.254)
    "https://[64:ff9b::a9fe:a9fe]/a/b",
    "https://[64:ff9b:1::a9fe:a9fe]/a/b",
    "https://[2002:a9fe:a9fe::]/a/b",
    "https://[::169.254.169.254]/a/b",
    "https://[::ffff:169.254.169.254]/a/b",
    "https://[2001:0:4136:e378:8000:63bf:56fe:5601]/a/b",  # Teredo
    # IPv4 written in decimal, hex or octal
    "https://2852039166/a/b",
    "http://2852039166/a/b",
    "https://0xa9fea9fe/a/b",
    "https://0251.0376.0251.0376/a/b",
    "https://" + ".".join(["a" * 63] * 5) + "/a/b",  # a host name longer than DNS allows
]
# ssh forms: no ssh client in the agent images and agent egress is 443 only
SSH_URLS = {
    "git@github.com:outpost/demo.git": "https://github.com/outpost/demo.git",
    "ssh://git@github.com/outpost/demo.git": "https://github.com/outpost/demo.git",
}


@pytest.mark.parametrize("url", SAFE_URLS)
def test_accept_repo_url(url: str) -> None:
    assert check_repo_url(url) == url


@pytest.mark.parametrize("url", UNSAFE_URLS)
def test_refuse_repo_url(url: str) -> None:
    with pytest.raises(UnsafeRepoError):
        check_repo_url(url)


def test_check_repo_url_never_resolves_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model's check runs on the API's event loop: it must never wait for DNS."""

    def no_dns(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("validation must not resolve names")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    assert check_repo_url("https://github.com/a/b.git")


@pytest.mark.parametrize(("url", "https_form"), SSH_URLS.items())
def test_refuse_ssh_url_suggesting_https(url: str, https_form: str) -> None:
    with pytest.raises(UnsafeRepoError, match="ssh") as refused:
        check_repo_url(url)
    assert https_form in str(refused.value)


def nip_io(host: str, port: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
    """What nip.io's DNS answers (a.b.c.d.nip.io -> a.b.c.d); this machine has no internet DNS."""
    address = host.removesuffix(".nip.io").rsplit("-", 1)[-1]
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]


def test_refuse_a_real_name_that_resolves_to_loopback() -> None:
    """localhost through the real resolver (socket.getaddrinfo): 127.0.0.1 or ::1."""
    with pytest.raises(UnsafeRepoError, match="loopback"):
        check_repo_resolution("https://localhost/a/b.git")


@pytest.mark.parametrize(
    "url",
    ["https://127.0.0.1.nip.io/a/b", "https://169.254.169.254.nip.io/a/b", "https://app-10.0.0.5.nip.io/a"],
)
def test_refuse_a_name_that_resolves_inward(url: str) -> None:
    assert check_repo_url(url) == url  # the name itself looks public
    with pytest.raises(UnsafeRepoError, match="names that point inside a network"):
        check_repo_resolution(url, resolve=nip_io)


def test_refuse_a_name_that_resolves_to_an_ipv6_form_embedding_ipv4() -> None:
    def nat64(host: str, port: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("64:ff9b::a9fe:a9fe", port, 0, 0))]

    with pytest.raises(UnsafeRepoError, match="embeds an IPv4"):
        check_repo_resolution("https://git.example.com/a/b", resolve=nat64)


def test_accept_a_name_that_resolves_only_to_public_addresses() -> None:
    check_repo_resolution("https://8.8.8.8.nip.io/a/b", resolve=nip_io)
    check_repo_resolution("https://8.8.8.8/a/b", resolve=nip_io)  # a literal: nothing to resolve


def test_a_name_that_does_not_resolve_passes_resolution() -> None:
    """It points nowhere: the clone fails with git's message (see check_repo_resolution)."""

    def nxdomain(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    check_repo_resolution("https://github.com/a/b.git", resolve=nxdomain)


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
    ({"agent": "shell", "task": "x", "repo": {"url": "git@github.com:o/r.git"}}, "repo.url"),
    ({"agent": "shell", "task": "x", "repo": {"url": "https://[64:ff9b::a9fe:a9fe]/x"}}, "repo.url"),
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


def test_refuse_ssh_url_in_the_api_with_the_https_form(client: TestClient, tenant: dict) -> None:
    body = {"agent": "shell", "task": "x", "repo": {"url": "git@github.com:outpost/demo.git"}}
    reply = client.post("/dispatch", json=body, headers=tenant["headers"])
    assert reply.status_code == 422, reply.text
    assert "https://github.com/outpost/demo.git" in reply.json()["detail"]
    assert _count(client, tenant) == 0


@pytest.mark.parametrize("host", ["127.0.0.1.nip.io", "169.254.169.254.nip.io", "10.1.2.3.nip.io"])
def test_refuse_in_the_api_a_name_that_resolves_inward(
    client: TestClient, tenant: dict, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    real = socket.getaddrinfo

    def with_nip_io(name: str, *args: Any, **kwargs: Any) -> Any:
        return nip_io(name, *args, **kwargs) if name.endswith(".nip.io") else real(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", with_nip_io)
    body = {"agent": "shell", "task": "x", "repo": {"url": f"https://{host}/o/r.git"}}
    reply = client.post("/dispatch", json=body, headers=tenant["headers"])
    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == "repo.url"
    assert "inside a network" in reply.json()["detail"]
    assert _count(client, tenant) == 0
    public = {**body, "repo": {"url": "https://8.8.8.8.nip.io/o/r.git"}}
    assert client.post("/dispatch", json=public, headers=tenant["headers"]).status_code == 202


@given(st.ip_addresses(v=4))
def test_every_ipv6_form_embedding_an_ipv4_address_is_refused(v4: ipaddress.IPv4Address) -> None:
    n = int(v4)
    embedded = [
        ipaddress.IPv6Address((0xFFFF << 32) | n),  # ::ffff:a.b.c.d, IPv4-mapped
        ipaddress.IPv6Address(n),  # ::a.b.c.d, IPv4-compatible
        ipaddress.IPv6Address((0x64FF9B << 96) | n),  # 64:ff9b::a.b.c.d, NAT64
        ipaddress.IPv6Address((0x2002 << 112) | (n << 80)),  # 2002:a.b.c.d::, 6to4
    ]
    for address in embedded:
        with pytest.raises(UnsafeRepoError):
            check_repo_url(f"https://[{address}]/o/r.git")


@given(st.ip_addresses(v=4).filter(lambda a: not a.is_global or a.is_multicast))
def test_every_internal_ipv4_address_is_refused_as_a_literal_and_as_an_answer(
    v4: ipaddress.IPv4Address,
) -> None:
    with pytest.raises(UnsafeRepoError):
        check_repo_url(f"https://{v4}/o/r.git")

    def answer(host: str, port: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (str(v4), port))]

    with pytest.raises(UnsafeRepoError):
        check_repo_resolution("https://git.example.com/o/r.git", resolve=answer)
