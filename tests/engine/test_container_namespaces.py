"""How the container runtime tells a container's processes from every other process.

With chroot isolation a container has no PID namespace: the runtime knows its processes by its
mount namespace, and kills every process in it when the container's ``buildah run`` has exited
(nothing of a task outlives it) or its stop timeout has passed. The kernel names a namespace by
an inode number that it hands to the next namespace created once the old one is freed (the
lowest free number: in practice the very next one), so a name read while a container ran says
nothing once that container is gone. Seen in a full test run: a container ended, the next
container started took its namespace number, and the first one's clean-up killed it a second
after its runner had claimed a job (``subprocess exited on killed``).

These tests stand in for buildah's process tree with ``unshare``: a "buildah run" process that
is the exec shim itself (argv[0] ``buildah-chroot-exec``, in a new mount namespace) and the
container's main process, its child. They need root, like the container runtime.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from control_plane.runtime import buildah as b
from control_plane.runtime.container import EXEC_SHIM, ContainerRuntime, _Task
from tests.e2e.helpers import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the container runtime needs root")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def container(seconds: int = 30) -> tuple[subprocess.Popen[bytes], int]:
    """A stand-in container: its "buildah run" (the exec shim) and its main process."""
    run = subprocess.Popen(
        ["unshare", "--mount", "--", "bash", "-c", f'exec -a {EXEC_SHIM} bash -c "sleep {seconds}; :"']
    )
    [main] = wait_for(lambda: b.argv0(run.pid) == EXEC_SHIM and children(run.pid), 10, interval=0.02)
    return run, main


def elsewhere(seconds: int = 60) -> subprocess.Popen[bytes]:
    """A process in a mount namespace of its own, created now: another container's, say."""
    process = subprocess.Popen(["unshare", "--mount", "--", "sleep", str(seconds)])
    wait_for(
        lambda: b.mount_namespace(process.pid) not in (None, b.mount_namespace(os.getpid())),
        10,
        interval=0.02,
    )
    return process


class Buildah:
    """buildah's place in the runtime: these containers are none of buildah's."""

    storage = "vfs"

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, *args: str, **_: Any) -> str:
        self.calls.append(args)
        return ""


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    made: list[ContainerRuntime] = []

    def make(**kwargs: Any) -> tuple[ContainerRuntime, list[dict[str, Any]]]:
        monkeypatch.setattr(b, "Buildah", lambda storage: Buildah())
        events: list[dict[str, Any]] = []
        instance = ContainerRuntime(
            state_dir=tmp_path / "runtime", specs={}, storage="vfs", event_sink=events.append, **kwargs
        )
        made.append(instance)
        return instance, events

    yield make
    for instance in made:
        instance.close(stop_tasks=False)


def task_of(run: subprocess.Popen[bytes], task_id: str = "t-a") -> _Task:
    return _Task(
        task_id=task_id,
        agent="shell",
        pid=run.pid,
        start_ticks=0,
        log_path="/dev/null",
        process=run,
        container=f"outpost-{task_id}",
        rootfs="",
        task_dir="/nonexistent",
        stop_timeout_s=120,
        read_only_root=False,
    )


def test_a_container_that_ended_never_kills_the_container_that_took_its_namespace_number(runtime):
    instance, events = runtime(poll_interval_s=3600)  # the test runs each check itself
    run, main = container()
    task = task_of(run)
    with instance._lock:
        instance._tasks[task.task_id] = task
    instance._check(task)  # finds the main process and its namespace, as the monitor does
    assert task.main_pid == main and task.namespace == b.mount_namespace(main)
    known_as = task.namespace

    # The container ends; its `buildah run` is not seen to have exited yet (it cleans up, the
    # monitor is busy with another task). Meanwhile the next container starts.
    os.kill(main, 9)
    run.wait(timeout=10)
    other = elsewhere()
    try:
        # The name the runtime knows the ended container by stays that container's until the
        # runtime has dealt with it: the next container gets a name of its own.
        assert b.mount_namespace(other.pid) != known_as
        instance._check(task)  # `buildah run` has exited: everything left of the container dies
        assert [e["detail"]["lastStatus"] for e in events] == ["STOPPED"]
        time.sleep(0.2)
        assert other.poll() is None, "the runtime killed a process of another container"
    finally:
        other.kill()
        other.wait()


def test_the_leftovers_of_a_container_still_die_with_it(runtime):
    """What the namespace is for: a process the container left behind (in its namespace, not
    a descendant of its `buildah run` any more) is killed once `buildah run` has exited."""
    instance, _ = runtime(poll_interval_s=3600)
    run, main = container()
    task = task_of(run)
    with instance._lock:
        instance._tasks[task.task_id] = task
    instance._check(task)
    leftover = subprocess.Popen(
        ["nsenter", f"--mount=/proc/{main}/ns/mnt", "--", "sleep", "60"], start_new_session=True
    )
    wait_for(
        lambda: b.mount_namespace(leftover.pid) == task.namespace and b.argv0(leftover.pid) == "sleep",
        10,
        interval=0.02,
    )
    os.kill(main, 9)
    run.wait(timeout=10)
    instance._check(task)
    assert leftover.wait(timeout=10) == -9


def test_a_restarted_control_plane_never_kills_by_the_name_of_a_container_that_is_gone(runtime, tmp_path):
    """A task record names the namespace its container had; the container ended while no
    control plane watched it, and the number now belongs to another namespace."""
    run, main = container()
    dead_pid = run.pid
    os.kill(main, 9)
    run.wait(timeout=10)
    other = elsewhere()
    try:
        state = tmp_path / "runtime" / "state"
        state.mkdir(parents=True)
        record = {
            "task_id": "t-gone",
            "agent": "shell",
            "pid": dead_pid,
            "start_ticks": 1,  # gone: whatever has its pid now started later
            "log_path": "/dev/null",
            "version": 2,
            "stop_reason": None,
            "container": "outpost-t-gone",
            "rootfs": "",
            "task_dir": str(tmp_path / "gone"),
            "stop_timeout_s": 120,
            "read_only_root": False,
            "main_pid": main,
            "namespace": b.mount_namespace(other.pid),  # its number, taken by another namespace
        }
        (state / "t-gone.json").write_text(json.dumps(record))
        instance, events = runtime(poll_interval_s=0.05)
        wait_for(lambda: events, 10, interval=0.02)
        assert events[0]["detail"]["lastStatus"] == "STOPPED"
        assert not instance.list_tasks()
        time.sleep(0.2)
        assert other.poll() is None, "the runtime killed a process of another container"
    finally:
        other.kill()
        other.wait()
