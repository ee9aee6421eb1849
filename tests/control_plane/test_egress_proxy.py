"""The egress proxy (control_plane/egress_proxy.py) with real clients: git clones through it over
TLS, curl is refused by it, and raw sockets read its reasons.

The one stand-in is name resolution: no name resolves to this machine's loopback, so the proxy
gets a resolver that maps the test's names to addresses (the origin's loopback port, or addresses
inside the VPC and link-local ones that must be refused). Everything after it is the proxy's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from control_plane.egress_proxy import (
    HEADER_TIMEOUT_S,
    IDLE_TIMEOUT_S,
    AddressPolicy,
    EgressProxy,
    Listener,
    Resolver,
    listeners_from,
    parse_networks,
)
from tests.egress_proxy_process import ask, connect, running_proxy
from tests.emulators.github import FakeGitHub

ROOT = Path(__file__).resolve().parents[2]
GIT_HOST = "git.example.test"
CLAUDE_HOSTS = (
    GIT_HOST,
    "inside.example.test",
    "metadata.example.test",
    "mixed.example.test",
    "zoned.example.test",
    "gone.example.test",
)
AIDER_HOSTS = (*CLAUDE_HOSTS, "pypi.example.test")
VPC = "10.0.0.0/16"


@dataclass
class Tls:
    ca_file: Path
    server: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> Tls:
    """A CA and a server certificate for the test's names, as a git host would present."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "outpost test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, GIT_HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(GIT_HOST)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return Tls(ca_file, server)


@pytest.fixture(scope="module")
def github(tmp_path_factory, tls: Tls) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(root=tmp_path_factory.mktemp("github"), tls=tls.server)
    fake.create_repository("acme/app", files={"README.md": "hello through the proxy\n"})
    fake.start()
    yield fake
    fake.stop()


@dataclass
class Running:
    ports: dict[str, int]  # agent → port
    resolved: list[str]  # every name the proxy asked the resolver for

    def url(self, agent: str = "claude") -> str:
        return f"http://127.0.0.1:{self.ports[agent]}"


@pytest.fixture(scope="module")
def proxy(github: FakeGitHub) -> Iterator[Running]:
    origin_port = int(github.url.rsplit(":", 1)[1])
    names: dict[str, list[tuple[str, int]]] = {
        GIT_HOST: [("127.0.0.1", origin_port)],
        "pypi.example.test": [("127.0.0.1", origin_port)],
        "inside.example.test": [("10.0.3.4", 443)],
        "metadata.example.test": [("169.254.170.2", 443)],
        "mixed.example.test": [("127.0.0.1", origin_port), ("10.0.200.9", 443)],
        "zoned.example.test": [("fe80::1%lo", 443)],
    }
    resolved: list[str] = []

    async def resolver(host: str, port: int) -> list[tuple[str, int]]:
        resolved.append(host)
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return names[host]

    with running(resolver) as ports:
        yield Running(ports, resolved)


@contextlib.contextmanager
def running(resolver: Resolver, **options: Any) -> Iterator[dict[str, int]]:
    """A proxy with a claude and an aider listener on free loopback ports, in a thread."""
    # The origin is on loopback, which the proxy refuses unless the operator lists it, as one
    # would list a peered network's git server.
    policy = AddressPolicy(denied=parse_networks([VPC]), internal=parse_networks(["127.0.0.0/8"]))
    listeners = [Listener(0, "claude", CLAUDE_HOSTS), Listener(0, "aider", AIDER_HOSTS)]
    instance = EgressProxy(listeners, policy, resolver=resolver, **options)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        ports = asyncio.run_coroutine_threadsafe(instance.start("127.0.0.1"), loop).result(10)
        yield dict(zip(("claude", "aider"), ports, strict=True))
    finally:
        asyncio.run_coroutine_threadsafe(instance.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def git(*args: str, proxy_url: str, ca_file: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd),
        "https_proxy": proxy_url,
        "GIT_SSL_CAINFO": str(ca_file),
        "GIT_TERMINAL_PROMPT": "0",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_git_clones_an_allowlisted_host_over_tls_through_the_proxy(proxy, github, tls, tmp_path) -> None:
    cloned = git(
        "clone",
        "-q",
        f"https://{GIT_HOST}/acme/app.git",
        "app",
        proxy_url=proxy.url(),
        ca_file=tls.ca_file,
        cwd=tmp_path,
    )
    assert cloned.returncode == 0, cloned.stderr
    assert (tmp_path / "app" / "README.md").read_text() == "hello through the proxy\n"
    # the certificate git checked was the origin's own: the proxy only tunnels bytes
    assert any(request.startswith("GET /acme/app.git/info/refs") for request in github.requests)


def test_git_to_a_host_off_the_list_fails_at_the_proxy_and_nothing_is_resolved(proxy, tls, tmp_path) -> None:
    before = list(proxy.resolved)
    cloned = git(
        "clone",
        "-q",
        "https://gitlab.example.test/acme/app.git",
        "app",
        proxy_url=proxy.url(),
        ca_file=tls.ca_file,
        cwd=tmp_path,
    )
    assert cloned.returncode != 0
    assert "403" in cloned.stderr and "CONNECT" in cloned.stderr, cloned.stderr
    assert proxy.resolved == before  # refused before any lookup: the name never leaves


def test_curl_to_a_literal_address_is_refused(proxy, tls) -> None:
    done = subprocess.run(
        ["curl", "-sS", "-x", proxy.url(), "--cacert", str(tls.ca_file), "https://203.0.113.7/"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 56, done  # curl: failure receiving data (the proxy's 403 to CONNECT)
    assert "403" in done.stderr


@pytest.mark.parametrize(
    ("target", "status", "reason"),
    [
        ("203.0.113.7:443", 403, "203.0.113.7: an address, not a host name"),
        ("[2001:db8::1]:443", 403, "2001:db8::1: an address, not a host name"),
        ("pypi.example.test:443", 403, "pypi.example.test is not on the claude agent's egress allowlist"),
        ("github.com:443", 403, "github.com is not on the claude agent's egress allowlist"),
        (f"{GIT_HOST}:22", 403, f"{GIT_HOST}:22: only port 443 leaves an agent task"),
        ("inside.example.test:443", 403, "inside.example.test resolves to 10.0.3.4, inside the VPC"),
        ("metadata.example.test:443", 403, "resolves to 169.254.170.2, not a public address"),
        ("mixed.example.test:443", 403, "mixed.example.test resolves to 10.0.200.9, inside the VPC"),
        ("zoned.example.test:443", 403, "zoned.example.test resolves to fe80::1%lo, not a public address"),
        ("gone.example.test:443", 502, "gone.example.test: could not resolve"),
        ("no-port-here", 400, "a CONNECT target is host:port"),
    ],
)
def test_connect_refusals_say_why(proxy, target: str, status: int, reason: str) -> None:
    got_status, body = connect(proxy.ports["claude"], target)
    assert (got_status, reason in body) == (status, True), body


def test_each_agent_listener_has_its_own_list(proxy, github) -> None:
    """aider's additions (a package index here) pass on aider's port only."""
    assert connect(proxy.ports["claude"], "pypi.example.test:443")[0] == 403
    with socket.create_connection(("127.0.0.1", proxy.ports["aider"]), timeout=10) as conn:
        conn.sendall(b"CONNECT pypi.example.test:443 HTTP/1.1\r\nHost: pypi.example.test:443\r\n\r\n")
        assert conn.recv(4096).startswith(b"HTTP/1.1 200 ")


def test_plain_http_is_refused_and_health_answers(proxy) -> None:
    status, body = ask(
        proxy.ports["claude"], b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"
    )
    assert status == 405 and "HTTPS only" in body
    assert ask(proxy.ports["claude"], b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n") == (200, "ok\n")


def test_a_tunnel_carries_bytes_both_ways_until_the_origin_closes(proxy, github, tls) -> None:
    """Python's own client through the tunnel: TLS to the origin, a request, its whole answer."""
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    with socket.create_connection(("127.0.0.1", proxy.ports["claude"]), timeout=10) as conn:
        conn.sendall(f"CONNECT {GIT_HOST}:443 HTTP/1.1\r\nHost: {GIT_HOST}:443\r\n\r\n".encode())
        assert conn.recv(4096) == b"HTTP/1.1 200 Connection established\r\n\r\n"
        with context.wrap_socket(conn, server_hostname=GIT_HOST) as secure:
            secure.sendall(
                f"GET /acme/app.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: {GIT_HOST}\r\nConnection: close\r\n\r\n".encode()
            )
            answer = b""
            while chunk := secure.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.0 200") or answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b"refs/heads/main" in answer


def test_listeners_are_checked_before_the_proxy_starts() -> None:
    with pytest.raises(ValueError, match="wildcard may only be the first label"):
        listeners_from('{"3128": {"agent": "claude", "hosts": ["git.*.com"]}}')
    with pytest.raises(ValueError, match="an address, not a host name"):
        listeners_from('{"3128": {"agent": "claude", "hosts": ["10.1.2.3"]}}')


def test_the_entry_point_serves_the_environment_it_is_given(tmp_path: Path) -> None:
    """``python -m control_plane.egress_proxy``, as the proxy's task runs it: it listens on each
    agent's port, refuses by the lists it was given, and stops cleanly on SIGTERM."""
    env = {
        **os.environ,
        "OUTPOST_EGRESS_PROXY_LISTENERS": '{"0": {"agent": "codex", "hosts": ["github.com"]}}',
        "OUTPOST_EGRESS_PROXY_DENIED_NETWORKS": f'["{VPC}"]',
        "OUTPOST_EGRESS_PROXY_HOST": "127.0.0.1",
    }
    argv = [sys.executable, "-m", "control_plane.egress_proxy"]
    with running_proxy(argv, env=env, log=tmp_path / "proxy.log", cwd=ROOT) as listeners:  # SIGTERM: exit 0
        (port,) = listeners.values()
        assert list(listeners) == ["codex"]
        assert connect(port, "198.51.100.1:443") == (
            403,
            "198.51.100.1: an address, not a host name; the egress allowlist names hosts\n",
        )
        assert connect(port, "gitlab.com:443")[0] == 403
        assert ask(port, b"GET /healthz HTTP/1.1\r\n\r\n") == (200, "ok\n")


@pytest.fixture
def silent_origin() -> Iterator[int]:
    """A server that accepts connections and never says a word: a tunnel to it carries only
    what the client sends."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in accepted:
        conn.close()
    server.close()


def test_an_idle_tunnel_is_closed_and_a_busy_one_is_not(silent_origin: int) -> None:
    """At a short idle timeout: a tunnel that carries a byte every 0.2 s outlives several
    timeouts; one that carries nothing is closed after about one."""

    async def to_origin(host: str, port: int) -> list[tuple[str, int]]:
        return [("127.0.0.1", silent_origin)]

    idle = 1.5  # 7 sends per timeout: a loaded machine must not pass for an idle client
    with running(to_origin, idle_timeout_s=idle) as ports:
        busy = socket.create_connection(("127.0.0.1", ports["claude"]), timeout=10)
        quiet = socket.create_connection(("127.0.0.1", ports["claude"]), timeout=10)
        for conn in (busy, quiet):
            conn.sendall(f"CONNECT {GIT_HOST}:443 HTTP/1.1\r\n\r\n".encode())
            assert conn.recv(4096).startswith(b"HTTP/1.1 200 ")
        opened = time.monotonic()
        quiet.settimeout(idle * 10)
        for _ in range(int(idle * 3 / 0.2)):
            busy.sendall(b".")
            time.sleep(0.2)
        assert quiet.recv(1) == b""  # closed by the proxy
        closed_after = time.monotonic() - opened
        busy.sendall(b"still open")  # and the busy one is
        busy.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing to read, but not closed either
            busy.recv(1)
        busy.close()
        quiet.close()
    assert idle <= closed_after < idle * 4 + 1


def test_the_production_timeouts_outlast_what_clients_wait_for() -> None:
    # npm waits up to 300 s on a quiet connection (fetch-timeout), pip 15 s, git forever unless
    # told otherwise: the proxy must not be the one that gives up first
    assert IDLE_TIMEOUT_S > 300
    assert HEADER_TIMEOUT_S < IDLE_TIMEOUT_S


def test_one_client_cannot_hold_more_than_its_share_of_connections(proxy) -> None:
    async def nowhere(host: str, port: int) -> list[tuple[str, int]]:
        raise socket.gaierror(socket.EAI_NONAME, "unused")

    with running(nowhere, max_connections_per_client=2) as ports:
        held = [socket.create_connection(("127.0.0.1", ports["claude"]), timeout=10) for _ in range(2)]
        time.sleep(0.2)  # both accepted by the proxy, neither has said anything yet
        status, body = connect(ports["claude"], "github.com:443")
        assert status == 429 and "has 2 connections open through the proxy already" in body
        held.pop().close()
        time.sleep(0.2)
        assert ask(ports["claude"], b"GET /healthz HTTP/1.1\r\n\r\n") == (200, "ok\n")
        for conn in held:
            conn.close()
