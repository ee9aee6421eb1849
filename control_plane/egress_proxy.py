"""The egress proxy: an agent task's only way to a host outside the VPC (docs/egress.md).

Agent tasks' security groups reach the control plane, the VPC endpoints Fargate needs and this
proxy, nothing else; the agents' environment points ``HTTPS_PROXY`` here. The proxy tunnels
HTTPS (``CONNECT host:443``) to a host its listener's allowlist names, and refuses everything
else with a 403 whose body says why:

- a literal address (``CONNECT 203.0.113.7:443``): the allowlist names hosts, and an address
  is how a script skips the names DNS Firewall would refuse;
- a host no pattern of the listener matches (agents/egress.py, the same matching as DNS
  Firewall and the repository check);
- a port other than 443;
- a name that resolves to an address inside the VPC, or to any address that is not public
  (loopback, private, link-local such as the metadata and credential endpoints), unless the
  operator listed its network: the proxy resolves the name itself and connects to the very
  address it checked, so a name can't be rebound to an internal address between the two.

Each agent has its own listener (port), so each agent's additions reach only that agent's tasks
when each agent has its own security group. Plain-HTTP proxy requests are refused: agents'
security groups never allowed port 80 either.

Run: ``python -m control_plane.egress_proxy`` with ``OUTPOST_EGRESS_PROXY_LISTENERS`` (JSON:
port → ``{"agent": name, "hosts": [patterns]}``), ``OUTPOST_EGRESS_PROXY_DENIED_NETWORKS``
(JSON list, the VPC's CIDR) and optionally ``OUTPOST_EGRESS_PROXY_INTERNAL_NETWORKS`` (JSON
list of non-public networks an allowlisted host may be in, such as a peered git server's).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import logging
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus

from agents.egress import check_patterns, host_allowed

log = logging.getLogger("outpost.egress")

HTTPS_PORT = 443
HEALTH_PATH = "/healthz"
MAX_HEADER_BYTES = 8192
# A client that connects and says nothing holds a socket; a slow handshake is not an agent's.
HEADER_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
# A tunnel with no byte either way for this long is closed: longer than any client here waits
# on a quiet connection (npm's fetch-timeout, 300 s, is the longest), so only an abandoned
# tunnel ends, and one task can't hold the proxy's sockets forever.
IDLE_TIMEOUT_S = 600.0
# Every agent task shares the proxy: one task's connections (open or still opening) are capped
# so that it can't exhaust the sockets the others need. Package managers open a few dozen.
MAX_CONNECTIONS_PER_CLIENT = 256
CHUNK = 65536

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Listener:
    """One agent's door: its port and the host patterns its tasks may reach."""

    port: int
    agent: str
    hosts: tuple[str, ...]


class RefusedError(Exception):
    """A request the proxy will not tunnel; the message is the 403's body."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class AddressPolicy:
    """Which resolved addresses a tunnel may reach."""

    denied: tuple[Network, ...]  # always refused: the VPC
    internal: tuple[Network, ...] = ()  # non-public networks the operator allows

    def problem(self, address: Address) -> str | None:
        if any(address in network for network in self.denied):
            return "inside the VPC"
        if address.is_global or any(address in network for network in self.internal):
            return None
        return "not a public address"


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(value) for value in values)


def target_of(request_line: str, listener: Listener) -> tuple[str, int]:
    """The host and port a ``CONNECT`` asks for, or RefusedError saying why not."""
    parts = request_line.split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise RefusedError("not an HTTP/1.x request line", status=400)
    method, target, _ = parts
    if method != "CONNECT":
        raise RefusedError(
            "this proxy tunnels HTTPS only (CONNECT host:443); plain HTTP leaves no agent task",
            status=405,
        )
    host, sep, port_text = target.rpartition(":")
    if not sep or not port_text.isdigit():
        raise RefusedError(f"{target!r}: a CONNECT target is host:port", status=400)
    host = host.removeprefix("[").removesuffix("]").lower().rstrip(".")
    if _is_address(host):
        raise RefusedError(f"{host}: an address, not a host name; the egress allowlist names hosts")
    if int(port_text) != HTTPS_PORT:
        raise RefusedError(f"{host}:{port_text}: only port {HTTPS_PORT} leaves an agent task")
    if not host_allowed(host, listener.hosts):
        raise RefusedError(
            f"{host} is not on the {listener.agent} agent's egress allowlist "
            "(egress_allowlist in cdk.json, or the agent's egress in agents/registry.py)"
        )
    return host, HTTPS_PORT


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


Resolver = Callable[[str, int], Awaitable[list[tuple[str, int]]]]


async def resolve(host: str, port: int) -> list[tuple[str, int]]:
    """The socket addresses ``host`` resolves to, through the VPC's resolver (DNS Firewall's)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(str(info[4][0]), int(info[4][1])) for info in infos]


class EgressProxy:
    def __init__(
        self,
        listeners: Sequence[Listener],
        policy: AddressPolicy,
        resolver: Resolver = resolve,
        *,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        max_connections_per_client: int = MAX_CONNECTIONS_PER_CLIENT,
    ) -> None:
        self.listeners = tuple(listeners)
        self.policy = policy
        self.resolver = resolver
        self.idle_timeout_s = idle_timeout_s
        self.max_connections_per_client = max_connections_per_client
        self._open: Counter[str] = Counter()  # client address → its connections now
        self._servers: list[asyncio.Server] = []

    async def start(self, host: str) -> list[int]:
        """Listen on every listener's port; returns the bound ports (0 picks a free one)."""
        ports = []
        for listener in self.listeners:
            server = await asyncio.start_server(functools.partial(self._serve, listener), host, listener.port)
            self._servers.append(server)
            ports.append(server.sockets[0].getsockname()[1])
        return ports

    async def close(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()

    async def _serve(
        self, listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        client = str((writer.get_extra_info("peername") or ("-",))[0])
        self._open[client] += 1
        try:
            await self._handle(listener, client, reader, writer)
        finally:
            self._open[client] -= 1
            if not self._open[client]:
                del self._open[client]

    async def _handle(
        self, listener: Listener, client: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        started = time.monotonic()
        target = "-"
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT_S)
            if len(head) > MAX_HEADER_BYTES:
                raise RefusedError("request header too large", status=431)
            # answered once the request is read: closing on unread bytes would reset the connection
            if self._open[client] > self.max_connections_per_client:
                raise RefusedError(
                    f"{client} has {self.max_connections_per_client} connections open through the proxy already",
                    status=429,
                )
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            if request_line.split()[:2] == ["GET", HEALTH_PATH]:
                await _answer(writer, 200, "ok")
                return
            target = request_line.split()[1] if len(request_line.split()) > 1 else "-"
            host, port = target_of(request_line, listener)
            upstream = await self._connect(host, port)
        except RefusedError as refused:
            log.info("refused agent=%s target=%s: %s", listener.agent, target, refused)
            await _answer(writer, refused.status, str(refused))
            return
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        up_reader, up_writer = upstream
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        activity = [time.monotonic()]  # the last byte either way
        watchdog = asyncio.create_task(self._close_when_idle(activity, writer, up_writer))
        sent, received = await asyncio.gather(
            _pipe(reader, up_writer, activity), _pipe(up_reader, writer, activity)
        )
        watchdog.cancel()
        writer.close()
        up_writer.close()
        log.info(
            "tunnel agent=%s target=%s sent=%d received=%d seconds=%.1f%s",
            listener.agent,
            target,
            sent,
            received,
            time.monotonic() - started,
            " (closed idle)" if watchdog.done() and not watchdog.cancelled() else "",
        )

    async def _close_when_idle(self, activity: list[float], *writers: asyncio.StreamWriter) -> None:
        while (quiet := time.monotonic() - activity[0]) < self.idle_timeout_s:
            await asyncio.sleep(self.idle_timeout_s - quiet)
        for writer in writers:
            writer.close()

    async def _connect(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            addresses = list(dict.fromkeys(await self.resolver(host, port)))
        except socket.gaierror as error:
            raise RefusedError(f"{host}: could not resolve ({error.strerror})", status=502) from error
        # Every address must pass: a name that also points inside is refused whole, whichever
        # address a client would have picked.
        for address, _ in addresses:
            # an IPv6 link-local answer carries its zone ("fe80::1%eth0"): not public either way
            if problem := self.policy.problem(ipaddress.ip_address(address.partition("%")[0])):
                raise RefusedError(f"{host} resolves to {address}, {problem}")
        failures = []
        for address, address_port in addresses:
            try:
                connecting = asyncio.open_connection(address, address_port)
                return await asyncio.wait_for(connecting, CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as error:
                failures.append(f"{address}: {error or 'timed out'}")
        raise RefusedError(f"{host}:{port}: could not connect ({'; '.join(failures)})", status=502)


async def _answer(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    body = (message + "\n").encode()
    writer.write(
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: text/plain\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
        + body
    )
    try:
        await writer.drain()
    except ConnectionError:
        pass
    writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, activity: list[float]) -> int:
    """Copy until end of stream, then half-close; returns the bytes copied."""
    copied = 0
    try:
        while chunk := await reader.read(CHUNK):
            activity[0] = time.monotonic()
            writer.write(chunk)
            await writer.drain()
            copied += len(chunk)
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()
    return copied


def listeners_from(text: str) -> list[Listener]:
    """``OUTPOST_EGRESS_PROXY_LISTENERS``: port → {"agent", "hosts"}, each pattern checked."""
    raw: Mapping[str, Mapping[str, object]] = json.loads(text)
    listeners = []
    for port, entry in raw.items():
        hosts = entry.get("hosts", [])
        if not isinstance(hosts, list):
            raise ValueError(f"listener {port}: hosts is a list of host patterns")
        listeners.append(Listener(int(port), str(entry["agent"]), check_patterns(hosts)))
    return listeners


def proxy_from_env(environ: Mapping[str, str] = os.environ) -> EgressProxy:
    listeners = listeners_from(environ["OUTPOST_EGRESS_PROXY_LISTENERS"])
    policy = AddressPolicy(
        denied=parse_networks(json.loads(environ.get("OUTPOST_EGRESS_PROXY_DENIED_NETWORKS", "[]"))),
        internal=parse_networks(json.loads(environ.get("OUTPOST_EGRESS_PROXY_INTERNAL_NETWORKS", "[]"))),
    )
    return EgressProxy(listeners, policy)


async def serve(proxy: EgressProxy, host: str) -> None:
    ports = await proxy.start(host)
    log.info(
        "listening on %s",
        ", ".join(f"{one.agent}:{port}" for one, port in zip(proxy.listeners, ports, strict=True)),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await proxy.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # every interface: agent tasks connect over the VPC
    host = os.environ.get("OUTPOST_EGRESS_PROXY_HOST", "0.0.0.0")  # noqa: S104
    asyncio.run(serve(proxy_from_env(), host))


if __name__ == "__main__":
    main()
