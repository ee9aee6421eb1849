"""The local runtime with real subprocesses: workspace, environment, stop, events, adoption."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from control_plane.runtime.base import LaunchedTask, LaunchRequest
from control_plane.runtime.local import LocalRuntime, _proc_start_ticks


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met before the deadline")


def alive(pid: int) -> bool:
    return _proc_start_ticks(pid) is not None


SCRIPT = """
import json, os, pathlib, subprocess, sys, time
ws = pathlib.Path(os.environ["OUTPOST_WORKSPACE"])
(ws / "env.json").write_text(json.dumps(dict(os.environ)))
(ws / "cwd").write_text(os.getcwd())
mode = sys.argv[1]
if mode == "exit":
    sys.exit(int(sys.argv[2]))
# a grandchild in its own session, to prove stop reaches it too
child = subprocess.Popen(["sleep", "300"], start_new_session=True)
(ws / "grandchild").write_text(str(child.pid))
time.sleep(300)
"""


@pytest.fixture
def runtime_factory(tmp_path):
    made: list[LocalRuntime] = []

    def make(mode: str, *args: str, **kwargs) -> tuple[LocalRuntime, list]:
        events: list = []
        script = tmp_path / "fake_runner.py"
        script.write_text(SCRIPT)
        runtime = LocalRuntime(
            state_dir=tmp_path / "state",
            control_plane_url="http://127.0.0.1:9",
            event_sink=events.append,
            command=(sys.executable, str(script), mode, *args),
            stop_grace_s=kwargs.pop("stop_grace_s", 1.0),
            **kwargs,
        )
        made.append(runtime)
        return runtime, events

    yield make
    for runtime in made:
        runtime.close(stop_tasks=True)


def request(task_id: str) -> LaunchRequest:
    return LaunchRequest(
        agent="shell",
        task_id=task_id,
        client_token=f"{task_id}-a1",
        env={"OUTPOST_CLAIM_TOKEN": "claim-secret", "OUTPOST_TASK_ID": task_id, "OUTPOST_AGENT": "shell"},
    )


def test_task_runs_in_its_own_workspace_with_the_runner_environment_only(runtime_factory, monkeypatch):
    monkeypatch.setenv("OUTPOST_ADMIN_KEY", "admin-secret-never-for-tasks")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "never-for-tasks")
    runtime, _ = runtime_factory("sleep")
    [launched] = runtime.launch([request("t-env")])
    assert launched == LaunchedTask("t-env", "t-env", "LOCAL")
    workspace = runtime.state_dir / "workspaces" / "t-env"
    env_file = wait_for(lambda: (workspace / "env.json").exists() and workspace / "env.json")
    import json

    env = json.loads(wait_for(lambda: env_file.read_text() or None))
    assert env["OUTPOST_WORKSPACE"] == str(workspace)
    assert env["OUTPOST_TASK_ID"] == "t-env" and env["OUTPOST_AGENT"] == "shell"
    assert env["OUTPOST_CONTROL_PLANE_URL"] == "http://127.0.0.1:9"
    assert env["OUTPOST_CLAIM_TOKEN"] == "claim-secret"  # noqa: S105 - a test value
    assert "OUTPOST_ADMIN_KEY" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert (
        Path(wait_for(lambda: (workspace / "cwd").exists() and (workspace / "cwd").read_text())) == workspace
    )


def test_stop_kills_the_whole_process_tree_and_reports_a_stopped_event(runtime_factory):
    runtime, events = runtime_factory("sleep")
    runtime.launch([request("t-stop")])
    workspace = runtime.state_dir / "workspaces" / "t-stop"
    grandchild = int(
        wait_for(lambda: (workspace / "grandchild").exists() and (workspace / "grandchild").read_text())
    )
    pid = runtime.pid_of("t-stop")
    assert pid and alive(pid) and alive(grandchild)
    runtime.stop("t-stop", "Outpost: cancelled")
    wait_for(lambda: not alive(pid) and not alive(grandchild))
    stopped = wait_for(lambda: [e for e in events if e["detail"]["lastStatus"] == "STOPPED"])
    detail = stopped[0]["detail"]
    assert detail["stopCode"] == "UserInitiated" and detail["stoppedReason"] == "Outpost: cancelled"
    assert [e["detail"]["version"] for e in events] == sorted(e["detail"]["version"] for e in events)
    assert runtime.list_tasks() == []
    wait_for(lambda: not workspace.exists())


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(runtime_factory, tmp_path):
    stubborn = tmp_path / "stubborn.py"
    stubborn.write_text(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(300)\n"
    )
    runtime, _ = runtime_factory("sleep", stop_grace_s=0.3)
    runtime.command = (sys.executable, str(stubborn))
    runtime.launch([request("t-stubborn")])
    pid = runtime.pid_of("t-stubborn")
    time.sleep(0.2)  # let it install its handler
    runtime.stop("t-stubborn", "Outpost: timed out")
    wait_for(lambda: not alive(pid))


def test_an_exit_is_reported_with_its_exit_code(runtime_factory):
    runtime, events = runtime_factory("exit", "7")
    runtime.launch([request("t-exit")])
    stopped = wait_for(lambda: [e for e in events if e["detail"]["lastStatus"] == "STOPPED"])
    detail = stopped[0]["detail"]
    assert detail["containers"][0]["exitCode"] == 7
    assert detail["stopCode"] == "EssentialContainerExited"
    assert events[0]["detail"]["lastStatus"] == "RUNNING"
    assert events[0]["detail"]["version"] < detail["version"]


def test_launching_the_same_task_twice_starts_one_process(runtime_factory):
    runtime, _ = runtime_factory("sleep")
    runtime.launch([request("t-once")])
    runtime.launch([request("t-once")])
    assert [t.task_id for t in runtime.list_tasks()] == ["t-once"]


def test_a_restarted_control_plane_adopts_running_tasks_and_reports_dead_ones(runtime_factory, tmp_path):
    first, _ = runtime_factory("sleep")
    first.launch([request("t-survivor"), request("t-victim")])
    survivor, victim = first.pid_of("t-survivor"), first.pid_of("t-victim")
    first.close(stop_tasks=False)  # a crash: the tasks outlive the control plane
    os.kill(victim, 9)
    wait_for(lambda: not alive(victim))
    second, events = runtime_factory("sleep")
    assert {t.task_id for t in second.list_tasks()} >= {"t-survivor"}
    stopped = wait_for(
        lambda: [e["detail"]["taskArn"] for e in events if e["detail"]["lastStatus"] == "STOPPED"]
    )
    assert stopped == ["t-victim"]
    assert [t.task_id for t in second.list_tasks()] == ["t-survivor"]
    second.stop("t-survivor", "Outpost: test over")
    wait_for(lambda: not alive(survivor))


def test_processes_a_killed_runner_left_in_its_workspace_are_ended(runtime_factory):
    runtime, events = runtime_factory("sleep")
    runtime.launch([request("t-killed")])
    workspace = runtime.state_dir / "workspaces" / "t-killed"
    grandchild = int(
        wait_for(lambda: (workspace / "grandchild").exists() and (workspace / "grandchild").read_text())
    )
    os.kill(runtime.pid_of("t-killed"), 9)  # the runner dies; its agent (own session) lives on
    wait_for(lambda: not alive(grandchild))
    stopped = wait_for(lambda: [e for e in events if e["detail"]["lastStatus"] == "STOPPED"])
    assert stopped[0]["detail"]["containers"][0]["exitCode"] == -9
