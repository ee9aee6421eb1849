"""The egress proxy (control_plane/egress_proxy.py) as a process of its own, as its task runs
it, and a raw request to it: shared by the proxy's tests, the image test and the real CLIs'."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

START_TIMEOUT_S = 30.0


@contextlib.contextmanager
def running_proxy(
    argv: Sequence[str], *, env: Mapping[str, str], log: Path, cwd: Path | None = None
) -> Iterator[dict[str, int]]:
    """Starts the proxy with ``argv``, its output in ``log``; yields its listeners (agent →
    port, from its "listening on" line). Leaving the block sends SIGTERM, as ECS stops a task,
    and asserts a clean exit 0; a failing block kills it instead."""
    with log.open("w") as output:
        process = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env), stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (listening := re.search(r"listening on (.+)", log.read_text())):
            assert process.poll() is None, f"exit {process.returncode}\n{log.read_text()}"
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield {agent: int(port) for agent, port in re.findall(r"([\w-]+):(\d+)", listening.group(1))}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def ask(port: int, request: bytes) -> tuple[int, str]:
    """Send one request to the proxy on loopback; its status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def connect(port: int, target: str) -> tuple[int, str]:
    return ask(port, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
