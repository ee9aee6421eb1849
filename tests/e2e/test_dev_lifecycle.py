"""`outpost dev` itself: its three lines, and a clean stop on Ctrl-C (SIGINT) and SIGTERM."""

from __future__ import annotations

import signal
import socket
from urllib.parse import urlsplit

import pytest

from tests.e2e.helpers import alive, start_dev, wait_for


def _port_open(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((parts.hostname, parts.port)) == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_outpost_dev_prints_its_keys_and_stops_cleanly_with_a_job_running(tmp_path, signum):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dev = start_dev(tmp_path / "state", port=port)
    try:
        assert dev.url == f"http://127.0.0.1:{port}"
        assert dev.api_key and dev.admin_key and dev.api_key != dev.admin_key
        pid_file = tmp_path / "agent.pid"
        created = dev.dispatch(f"echo $$ > {pid_file}; exec sleep 300")
        dev.wait_status(created["dispatch_id"], {"RUNNING"})
        agent = int(
            wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 20, what="agent pid")
        )
        runners = list(dev.task_pids())
        control_plane = dev.control_plane_pid()
        assert runners and alive(agent) and alive(control_plane)
    except BaseException:
        dev.process.kill()
        raise
    dev.process.send_signal(signum)
    assert dev.process.wait(timeout=45) == 0
    for pid in [agent, control_plane, *runners]:
        assert not alive(pid), f"process {pid} outlived outpost dev"
    assert not _port_open(dev.url)
