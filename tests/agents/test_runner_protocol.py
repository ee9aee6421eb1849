"""The runner's calls to the control plane: an answer cut short (the control plane died while
sending it) is a network error the runner retries, not a failure of the job."""

from __future__ import annotations

import socket
import threading

import pytest

from agents.runner.protocol import ControlPlane, ProtocolError


def test_an_answer_cut_short_is_a_retryable_network_error() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer_half() -> None:
        connection, _ = server.accept()
        with connection:
            request = b""
            while not request.endswith(b"}"):  # the whole request (its JSON body ends with })
                request += connection.recv(65536)
            connection.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 1750\r\n\r\n{"uploads": ')
            connection.shutdown(socket.SHUT_WR)  # and then nothing more: the answer is cut short

    thread = threading.Thread(target=answer_half, daemon=True)
    thread.start()
    with server, pytest.raises(ProtocolError) as raised:
        ControlPlane(f"http://127.0.0.1:{port}").claim("t-x.secret", "t-x")
    thread.join(timeout=5)
    assert raised.value.retryable and raised.value.status is None, raised.value
    assert "IncompleteRead" in str(raised.value)
