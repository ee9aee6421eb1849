"""`outpost dev` itself: its three lines, a clean stop on Ctrl-C (SIGINT) and SIGTERM, a busy port,
and its state directory across restarts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.helpers import OUTPOST, Dev, alive, start_dev, stop_dev, wait_for


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
    assert "Traceback" not in dev.stderr_path.read_text()


def test_a_busy_port_is_refused_before_any_key_is_printed(dev: Dev) -> None:
    port = str(urlsplit(dev.url).port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTPOST_")}
    done = subprocess.run(
        [str(OUTPOST), "dev", "--port", port], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stdout == ""  # no keys the server already on that port would refuse
    assert f"port {port} on 127.0.0.1 is in use" in done.stderr and "Traceback" not in done.stderr
    assert dev.get(dev.dispatch("true")["dispatch_id"])  # the first one serves on


def test_state_dir_keeps_keys_dispatches_and_artifacts_across_restarts(tmp_path) -> None:
    state = tmp_path / "state"
    first = start_dev(state)
    try:
        done = first.dispatch("echo kept > kept.txt")
        first.wait_status(done["dispatch_id"], {"COMPLETED"})
        admin = {"Authorization": f"Bearer {first.admin_key}"}
        with first.client() as client:
            # a tenant with no run slot: its dispatch waits PENDING across the restart
            tenant = client.post("/tenants", json={"name": "second", "max_running": 0}, headers=admin).json()
            waiting = client.post(
                "/dispatch",
                json={"agent": "shell", "task": "echo later"},
                headers={"Authorization": f"Bearer {tenant['api_key']}"},
            ).json()
    finally:
        assert stop_dev(first) == 0
    assert "Traceback" not in first.stderr_path.read_text()

    second = start_dev(state)
    try:
        assert (second.api_key, second.admin_key) == (first.api_key, first.admin_key)
        assert second.get(done["dispatch_id"])["status"] == "COMPLETED"
        with second.client() as client:
            artifacts = client.get(f"/dispatch/{done['dispatch_id']}/artifacts").json()["items"]
            patch = next(a for a in artifacts if a["name"].endswith("patch.diff"))
            assert "+kept" in httpx.get(patch["url"]).text
            lines = client.get(f"/dispatch/{done['dispatch_id']}/logs").json()["lines"]
            assert any("claimed dispatch" in line for line in lines)
            # the tenant made before the restart, with its key, and its waiting work
            as_tenant = {"Authorization": f"Bearer {tenant['api_key']}"}
            assert (
                client.get(f"/dispatch/{waiting['dispatch_id']}", headers=as_tenant).json()["status"]
                == "PENDING"
            )
            admin = {"Authorization": f"Bearer {second.admin_key}"}
            client.patch(f"/tenants/{tenant['tenant_id']}", json={"max_running": 1}, headers=admin)

            def finished() -> bool:
                reply = client.get(f"/dispatch/{waiting['dispatch_id']}", headers=as_tenant).json()
                return reply["status"] == "COMPLETED"

            wait_for(finished, 30, what="the dispatch kept PENDING completes")
    finally:
        stop_dev(second)
