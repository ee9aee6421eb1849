"""The local runtime: each agent task is the runner as a subprocess in a temporary workspace.

Used by ``outpost dev`` and the tests. The claim protocol and the runner code are the ones the
ECS runtime uses; only the process around them differs:

- a task is ``python -m agents.runner`` in its own session (process group), with the runner's
  environment (docs/design.md) and none of the control plane's secrets (no ``OUTPOST_*``
  variable of the control plane, no AWS credentials);
- ``stop`` sends SIGTERM to the task's process group and to every descendant that left it,
  then SIGKILL after a grace period;
- task-state changes are reported as events in the shape of ECS "Task State Change" events
  (``detail.version`` rising per task), so the status tracker treats both runtimes alike;
- tasks are recorded in a state directory, so a restarted control plane adopts the tasks that
  outlived it (they keep running: they are not children of the control plane's session).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from control_plane.runtime.base import (
    EventSink,
    LaunchedTask,
    LaunchError,
    LaunchRequest,
    RuntimeTask,
    TaskEvent,
)

log = logging.getLogger(__name__)

RUNNER_COMMAND = (sys.executable, "-m", "agents.runner")
# Variables of the control plane's own environment that a task never inherits.
_WITHHELD_PREFIXES = ("OUTPOST_", "AWS_")


def _proc_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of /proc/<pid>/stat), None if gone.

    Together with the pid it identifies a process, so an adopted task is never confused with an
    unrelated process that reused its pid. A zombie counts as gone.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _working_in(directory: str) -> list[int]:
    """Processes whose working directory is ``directory`` or below (a task's workspace)."""
    found: list[int] = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == directory or cwd.startswith(directory + "/"):
            found.append(int(entry.name))
    return found


def _descendants(root: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """Every live descendant of ``root`` (by parent pid), including those in other sessions."""
    children = _children_map() if children is None else children
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


@dataclass
class _Task:
    task_id: str
    agent: str
    pid: int
    start_ticks: int
    workspace: str
    log_path: str
    process: Any = None  # subprocess.Popen when this control plane started it
    version: int = 1
    stop_reason: str | None = None
    stop_requested_at: float | None = None
    log_file: IO[bytes] | None = None
    # descendants seen so far (pid -> start ticks): after the runner dies its orphans are
    # re-parented away, so they are remembered while the runner lives
    known: dict[int, int] = field(default_factory=dict)

    def state(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "agent": self.agent,
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "workspace": self.workspace,
            "log_path": self.log_path,
            "version": self.version,
            "stop_reason": self.stop_reason,
        }


@dataclass
class LocalRuntime:
    state_dir: Path
    control_plane_url: str = ""
    event_sink: EventSink | None = None
    command: tuple[str, ...] = RUNNER_COMMAND
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. runner tuning variables
    stop_grace_s: float = 5.0
    poll_interval_s: float = 0.1
    name: str = "local"

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        (self.state_dir / "tasks").mkdir(parents=True, exist_ok=True)
        (self.state_dir / "workspaces").mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        self._tasks: dict[str, _Task] = {}
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._adopt()
        self._monitor = threading.Thread(target=self._watch, name="outpost-local-runtime", daemon=True)
        self._monitor.start()

    # -- the Runtime interface --------------------------------------------------------------

    def launch(self, requests: list[LaunchRequest]) -> list[LaunchedTask | LaunchError]:
        return [self._launch_one(r) for r in requests]

    def stop(self, runtime_ref: str, reason: str) -> None:
        with self._lock:
            task = self._tasks.get(runtime_ref)
            if task is None or task.stop_requested_at is not None:
                return
            task.stop_reason = reason
            task.stop_requested_at = time.monotonic()
            self._save(task)
        self._signal(task, signal.SIGTERM)

    def list_tasks(self) -> list[RuntimeTask]:
        with self._lock:
            return [
                RuntimeTask(
                    runtime_ref=t.task_id,
                    agent=t.agent,
                    task_id=t.task_id,
                    last_status="STOPPING" if t.stop_requested_at else "RUNNING",
                    extra={"pid": t.pid},
                )
                for t in self._tasks.values()
            ]

    def close(self, *, stop_tasks: bool = True, timeout_s: float | None = None) -> None:
        """Stop watching; on a clean shutdown also stop every task and wait for them."""
        if self._closed.is_set():
            return
        if stop_tasks:
            for task in list(self._tasks.values()):
                self.stop(task.task_id, "Outpost: control plane shut down")
            deadline = time.monotonic() + (timeout_s if timeout_s is not None else self.stop_grace_s + 5)
            while self._tasks and time.monotonic() < deadline:
                time.sleep(0.05)
        self._closed.set()
        self._monitor.join(timeout=5)

    # -- introspection (tests, `outpost dev`) ----------------------------------------------

    def pid_of(self, task_id: str) -> int | None:
        with self._lock:
            task = self._tasks.get(task_id)
            return task.pid if task else None

    def log_path(self, task_id: str) -> Path | None:
        with self._lock:
            task = self._tasks.get(task_id)
            return Path(task.log_path) if task else None

    # -- internals ---------------------------------------------------------------------------

    def _launch_one(self, request: LaunchRequest) -> LaunchedTask | LaunchError:
        import subprocess

        with self._lock:
            if request.task_id in self._tasks:  # the same launch again: idempotent, like clientToken
                return LaunchedTask(request.task_id, request.task_id, "LOCAL")
        workspace = self.state_dir / "workspaces" / request.task_id
        workspace.mkdir(parents=True, exist_ok=True)
        log_path = self.state_dir / "logs" / f"{request.task_id}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(_WITHHELD_PREFIXES)}
        env.update(self.extra_env)
        env.update(request.env)
        env["OUTPOST_WORKSPACE"] = str(workspace)
        env.setdefault("OUTPOST_TASK_ID", request.task_id)
        env.setdefault("OUTPOST_AGENT", request.agent)
        if self.control_plane_url:
            env.setdefault("OUTPOST_CONTROL_PLANE_URL", self.control_plane_url)
        log_file = open(log_path, "ab")  # noqa: SIM115 - closed when the task exits
        try:
            process = subprocess.Popen(
                list(self.command),
                cwd=workspace,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group; survives a control-plane crash
            )
        except OSError as exc:
            log_file.close()
            shutil.rmtree(workspace, ignore_errors=True)
            return LaunchError(f"could not start the runner: {exc}")
        task = _Task(
            task_id=request.task_id,
            agent=request.agent,
            pid=process.pid,
            start_ticks=_proc_start_ticks(process.pid) or 0,
            workspace=str(workspace),
            log_path=str(log_path),
            process=process,
            log_file=log_file,
        )
        with self._lock:
            self._tasks[task.task_id] = task
            self._save(task)
        self._emit(task, "RUNNING")
        return LaunchedTask(task.task_id, task.task_id, "LOCAL")

    def _state_file(self, task_id: str) -> Path:
        return self.state_dir / "tasks" / f"{task_id}.json"

    def _save(self, task: _Task) -> None:
        path = self._state_file(task.task_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(task.state()))
        tmp.replace(path)

    def _adopt(self) -> None:
        """Take over the tasks a previous control plane left running; report those that died."""
        for path in sorted((self.state_dir / "tasks").glob("*.json")):
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                path.unlink(missing_ok=True)
                continue
            task = _Task(
                task_id=state["task_id"],
                agent=state["agent"],
                pid=state["pid"],
                start_ticks=state["start_ticks"],
                workspace=state["workspace"],
                log_path=state["log_path"],
                version=state.get("version", 1),
                stop_reason=state.get("stop_reason"),
            )
            if task.stop_reason:
                task.stop_requested_at = time.monotonic()
            self._tasks[task.task_id] = task
            log.info("adopted local task %s (pid %s)", task.task_id, task.pid)

    def _alive(self, task: _Task) -> bool:
        if task.process is not None:
            return task.process.poll() is None
        return _proc_start_ticks(task.pid) == task.start_ticks

    def _remember_descendants(self) -> None:
        children = _children_map()
        for task in list(self._tasks.values()):
            if not self._alive(task):
                continue
            for pid in _descendants(task.pid, children):
                ticks = _proc_start_ticks(pid)
                if ticks is not None:
                    task.known[pid] = ticks

    def _signal(self, task: _Task, signum: int) -> None:
        # the runner's tree, what it left behind (re-parented orphans it started in their own
        # sessions), and anything still working inside the task's workspace
        targets = _descendants(task.pid) + _working_in(task.workspace)
        for pid, ticks in list(task.known.items()):
            if _proc_start_ticks(pid) != ticks:
                task.known.pop(pid, None)
                continue
            targets.append(pid)
            targets.extend(_descendants(pid))
            with contextlib.suppress(OSError):
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signum)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            # The session leader's pid is its group id, and stays reserved while any member of
            # the group lives; an adopted task's pid is trusted only while it is the same process.
            if task.process is not None or self._alive(task):
                os.killpg(task.pid, signum)
        for pid in targets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)

    def _watch(self) -> None:
        rounds = 0
        while not self._closed.wait(self.poll_interval_s):
            rounds += 1
            if self._tasks and rounds % 5 == 0:  # a /proc scan twice a second is plenty
                try:
                    self._remember_descendants()
                except Exception:
                    log.exception("listing the processes of local tasks failed")
            for task in list(self._tasks.values()):
                try:
                    self._check(task)
                except Exception:  # the watcher must never die
                    log.exception("checking local task %s failed", task.task_id)

    def _check(self, task: _Task) -> None:
        if self._alive(task):
            if task.stop_requested_at and time.monotonic() - task.stop_requested_at > self.stop_grace_s:
                self._signal(task, signal.SIGKILL)
            return
        # The runner exited: make sure nothing it started lives on, then report and clean up.
        self._signal(task, signal.SIGKILL)
        exit_code = task.process.returncode if task.process is not None else None
        if task.log_file is not None:
            task.log_file.close()
        with self._lock:
            self._tasks.pop(task.task_id, None)
        self._emit(task, "STOPPED", exit_code=exit_code)
        self._state_file(task.task_id).unlink(missing_ok=True)
        shutil.rmtree(task.workspace, ignore_errors=True)

    def _emit(self, task: _Task, status: str, exit_code: int | None = None) -> None:
        task.version += 1
        if status != "STOPPED":
            with self._lock:
                if task.task_id in self._tasks:
                    self._save(task)
        event = task_state_event(
            task_arn=task.task_id,
            agent=task.agent,
            task_id=task.task_id,
            last_status=status,
            version=task.version,
            stop_code=(
                None
                if status != "STOPPED"
                else ("UserInitiated" if task.stop_reason else "EssentialContainerExited")
            ),
            stopped_reason=(
                None
                if status != "STOPPED"
                else (task.stop_reason or f"Essential container in task exited (exit code {exit_code})")
            ),
            exit_code=exit_code,
        )
        if self.event_sink is not None:
            try:
                self.event_sink(event)
            except Exception:  # the reconciler catches what a lost event misses
                log.exception("could not deliver the event of task %s", task.task_id)


def task_state_event(
    *,
    task_arn: str,
    agent: str,
    task_id: str,
    last_status: str,
    version: int,
    stop_code: str | None = None,
    stopped_reason: str | None = None,
    exit_code: int | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> TaskEvent:
    """An event shaped like EventBridge's "ECS Task State Change" (the fields Outpost reads)."""
    detail: dict[str, Any] = {
        "taskArn": task_arn,
        "group": f"outpost:{agent}",
        "startedBy": "outpost",
        "lastStatus": last_status,
        "desiredStatus": "STOPPED" if last_status == "STOPPED" else "RUNNING",
        "version": version,
        "overrides": {
            "containerOverrides": [
                {"name": "agent", "environment": [{"name": "OUTPOST_TASK_ID", "value": task_id}]}
            ]
        },
        "containers": [{"name": "agent", "lastStatus": last_status}],
    }
    if exit_code is not None:
        detail["containers"][0]["exitCode"] = exit_code
    if stop_code:
        detail["stopCode"] = stop_code
    if stopped_reason:
        detail["stoppedReason"] = stopped_reason
    return {
        "version": "0",
        "source": "aws.ecs",
        "detail-type": "ECS Task State Change",
        "time": clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "detail": detail,
    }
