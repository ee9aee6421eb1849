"""The app under a real uvicorn on loopback: body limits on the wire, JSON access logs."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from control_plane.observability import JsonFormatter
from tests.control_plane.helpers import serving


@pytest.fixture
def served(app: Any) -> Iterator[tuple[str, int]]:
    with serving(app) as address:
        yield address


def test_refuse_endless_chunked_body_after_reading_little(served: tuple[str, int], tenant: dict) -> None:
    host, port = served
    sent = 0
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(
            b"POST /dispatch HTTP/1.1\r\nHost: outpost\r\nContent-Type: application/json\r\n"
            + f"Authorization: {tenant['headers']['Authorization']}\r\n".encode()
            + b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"4000\r\n" + b" " * 0x4000 + b"\r\n"
        conn.settimeout(0.05)
        reply = b""
        while sent < 64 * 1024 * 1024 and not reply:
            try:
                conn.sendall(chunk)
                sent += 0x4000
                reply = conn.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        conn.settimeout(5)
        if not reply:
            reply = conn.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")
    assert sent < 2 * 1024 * 1024  # refused after ~64 KiB, not after reading all that was offered


def test_refuse_declared_oversized_body_before_reading_it(served: tuple[str, int], tenant: dict) -> None:
    host, port = served
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(
            b"POST /dispatch HTTP/1.1\r\nHost: outpost\r\nContent-Type: application/json\r\n"
            + f"Authorization: {tenant['headers']['Authorization']}\r\n".encode()
            + b"Content-Length: 1000000000\r\n\r\n"
        )
        assert conn.recv(4096).startswith(b"HTTP/1.1 413")  # no body byte was sent


def test_access_log_is_json_with_request_id_and_no_key(client: Any, tenant: dict) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("outpost")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        client.post(
            "/dispatch",
            json={"agent": "shell", "task": "echo secret-prompt"},
            headers={**tenant["headers"], "X-Request-Id": "req-log-test-0001"},
        )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "outpost.access"]
    assert access and access[-1]["request_id"] == "req-log-test-0001"
    assert (access[-1]["method"], access[-1]["path"], access[-1]["status"]) == ("POST", "/dispatch", 202)
    assert access[-1]["tenant_id"] == tenant["tenant_id"]
    text = stream.getvalue()
    assert tenant["api_key"] not in text and "secret-prompt" not in text
