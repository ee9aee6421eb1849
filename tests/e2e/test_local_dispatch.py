"""End to end over `outpost dev`: the HTTP API, the engine, the local runtime and the real runner.

Each test dispatches a `shell` job through the public API and watches what a user sees: the
dispatch's status, exit code, artifacts, and (for cancel and crash) the processes on the machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.e2e.helpers import Dev, alive, runner_pid_of, wait_for


def _download(dev: Dev, dispatch_id: str, name: str) -> str:
    with dev.client() as client:
        items = client.get(f"/dispatch/{dispatch_id}/artifacts").json()["items"]
    urls = {item["name"]: item["url"] for item in items}
    assert name in urls, f"{name} not among {sorted(urls)}"
    reply = httpx.get(urls[name], timeout=30)
    assert reply.status_code == 200
    return reply.text


def _running_sleeper(dev: Dev, tmp_path: Path) -> tuple[str, int, int]:
    """Dispatches a job that sleeps, waits until it runs: (dispatch id, agent pid, runner pid)."""
    pid_file = tmp_path / "agent.pid"
    created = dev.dispatch(f"echo $$ > {pid_file}; exec sleep 300")
    dispatch_id = created["dispatch_id"]
    dev.wait_status(dispatch_id, {"RUNNING"})
    agent_pid = int(
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 20, what="agent pid")
    )
    runner_pid = runner_pid_of(dev, agent_pid)
    return dispatch_id, agent_pid, runner_pid


def test_shell_job_that_changes_a_file_completes_with_a_downloadable_patch(dev: Dev):
    created = dev.dispatch("echo 'hello from outpost' > greeting.txt && echo wrote greeting")
    assert created["status"] == "PENDING"
    final = dev.wait_status(created["dispatch_id"], {"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"})
    assert final["status"] == "COMPLETED", final
    assert final["exit_code"] == 0
    assert "patch.diff" in final["artifacts"]
    patch = _download(dev, created["dispatch_id"], "patch.diff")
    assert "greeting.txt" in patch
    assert "+hello from outpost" in patch
    with dev.client() as client:
        logs = client.get(f"/dispatch/{created['dispatch_id']}/logs").json()
    assert any("wrote greeting" in line for line in logs["lines"])


def test_failing_command_fails_with_its_exit_code(dev: Dev):
    created = dev.dispatch("echo about to fail; exit 3")
    final = dev.wait_status(created["dispatch_id"], {"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"})
    assert final["status"] == "FAILED", final
    assert final["exit_code"] == 3


def test_job_over_its_timeout_is_timed_out(dev: Dev):
    created = dev.dispatch("sleep 60", timeout_s=2)
    final = dev.wait_status(
        created["dispatch_id"], {"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"}, timeout=30
    )
    assert final["status"] == "TIMED_OUT", final


def test_cancelling_a_running_job_cancels_it_and_ends_its_processes(dev: Dev, tmp_path):
    dispatch_id, agent_pid, runner_pid = _running_sleeper(dev, tmp_path)
    with dev.client() as client:
        reply = client.delete(f"/dispatch/{dispatch_id}")
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "CANCELLED"
    wait_for(
        lambda: not alive(agent_pid) and not alive(runner_pid), 20, what="cancelled job's processes gone"
    )
    assert dev.get(dispatch_id)["status"] == "CANCELLED"


def test_a_runner_killed_mid_job_fails_its_dispatch(dev: Dev, tmp_path):
    dispatch_id, agent_pid, runner_pid = _running_sleeper(dev, tmp_path)
    os.kill(runner_pid, signal.SIGKILL)
    # within a few reconcile intervals (1 s here): FAILED, or requeued and then run again
    final = dev.wait_status(dispatch_id, {"FAILED", "PENDING"}, timeout=20)
    assert final["status"] == "FAILED", final
    assert "without reporting" in (final["error"] or "")
    wait_for(lambda: not alive(agent_pid), 20, what="the killed runner's agent process gone")


def test_control_plane_restarted_while_a_job_runs_loses_nothing(dev: Dev, tmp_path):
    marker = tmp_path / "started"
    created = dev.dispatch(f"touch {marker}; sleep 4; echo survived > survivor.txt")
    dispatch_id = created["dispatch_id"]
    dev.wait_status(dispatch_id, {"RUNNING"})
    wait_for(marker.exists, 20, what="job started")
    old_pid = dev.control_plane_pid()
    os.kill(old_pid, signal.SIGKILL)  # a crash: no shutdown code runs
    wait_for(lambda: not alive(old_pid), 10, what="control plane gone")
    final = dev.wait_status(dispatch_id, {"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"}, timeout=60)
    assert final["status"] == "COMPLETED", final
    assert dev.control_plane_pid() != old_pid
    assert "+survived" in _download(dev, dispatch_id, "patch.diff")
    # and the restarted control plane still serves new jobs
    again = dev.dispatch("echo after restart")
    assert dev.wait_status(again["dispatch_id"], {"COMPLETED", "FAILED"})["status"] == "COMPLETED"


def test_the_agent_sees_neither_the_claim_token_nor_control_plane_secrets(dev: Dev):
    created = dev.dispatch("env | sort > environment.txt")
    final = dev.wait_status(created["dispatch_id"], {"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"})
    assert final["status"] == "COMPLETED", final
    patch = _download(dev, created["dispatch_id"], "patch.diff")
    assert "environment.txt" in patch and "+PATH=" in patch
    for secret in (
        "OUTPOST_CLAIM_TOKEN",
        "OUTPOST_ADMIN_KEY",
        dev.admin_key,
        dev.api_key,
        "AWS_SECRET_ACCESS_KEY",
    ):
        assert secret not in patch


def test_the_outpost_cli_dispatches_waits_and_downloads_artifacts(dev: Dev, tmp_path):
    outpost = str(Path(sys.executable).with_name("outpost"))
    env = {**os.environ, "OUTPOST_URL": dev.url, "OUTPOST_API_KEY": dev.api_key}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([outpost, *args], env=env, capture_output=True, text=True, timeout=90)

    done = run("dispatch", "echo from-cli > cli.txt", "--wait", "--wait-timeout", "60", "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["status"] == "COMPLETED"
    downloaded = run("artifacts", "download", record["dispatch_id"], "--out", str(tmp_path / "out"))
    assert downloaded.returncode == 0, downloaded.stderr
    assert "+from-cli" in (tmp_path / "out" / "patch.diff").read_text()
    # the README's form: the directory as an argument
    readme = run("artifacts", "download", record["dispatch_id"], str(tmp_path / "result"))
    assert readme.returncode == 0, readme.stderr
    assert sorted(p.name for p in (tmp_path / "result").iterdir()) == [
        "manifest.json",
        "patch.diff",
        "summary.json",
        "transcript.txt",
    ]
    failed = run("dispatch", "exit 4", "--wait", "--wait-timeout", "60", "--json")
    assert failed.returncode == 1 and json.loads(failed.stdout)["exit_code"] == 4
    missing = run("status", "d-doesnotexist")
    assert missing.returncode == 1 and "404" in missing.stderr


def test_a_runner_interrupted_mid_job_is_requeued_and_completes_on_the_next_attempt(dev: Dev, tmp_path):
    pid_file = tmp_path / "agent.pid"
    created = dev.dispatch(f"echo $$ >> {pid_file}; sleep 3; echo finished > result.txt")
    dispatch_id = created["dispatch_id"]
    dev.wait_status(dispatch_id, {"RUNNING"})
    first_agent = int(
        wait_for(lambda: pid_file.exists() and pid_file.read_text().split()[0], 20, what="agent")
    )
    # what ECS does at a Spot interruption: SIGTERM to the task, which then reports INTERRUPTED
    os.kill(runner_pid_of(dev, first_agent), signal.SIGTERM)
    final = dev.wait_status(dispatch_id, {"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"}, timeout=60)
    assert final["status"] == "COMPLETED", final
    assert final["attempt"] == 2
    assert len(pid_file.read_text().split()) == 2  # the job ran again, in a new task
    assert "+finished" in _download(dev, dispatch_id, "patch.diff")


def test_the_warm_pool_holds_the_dev_size_of_each_agent(dev: Dev):
    def pools() -> dict:
        reply = httpx.get(
            f"{dev.url}/health/fleet", headers={"Authorization": f"Bearer {dev.admin_key}"}, timeout=10
        )
        assert reply.status_code == 200, reply.text
        return reply.json()["agents"]

    # the registry's dev sizes: one idle shell runner (extra idle ones, left by earlier jobs,
    # are scaled down), no idle runner for the other agents
    wait_for(lambda: pools()["shell"]["idle"] == 1, 30, what="exactly one idle shell runner")
    agents = pools()
    assert all(not agents[name]["idle"] for name in ("claude", "codex", "gemini", "aider", "grok"))
