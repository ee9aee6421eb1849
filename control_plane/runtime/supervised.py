"""What the local and the container runtimes share: tasks they start as host processes and watch.

Each task is recorded as JSON in a state directory, so a restarted control plane adopts the
tasks that outlived it; a monitor thread checks every task; ``stop`` records the request and
signals the task; task-state changes are reported as events in the shape of ECS "Task State
Change" events (``detail.version`` rising per task), so one status tracker serves all runtimes.

A runtime says how a task is started (``_start_task``), read back from its record (``_restore``),
signalled (``_terminate``) and checked (``_check``, which ends with ``_report_stopped``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, ClassVar, Generic, TypeVar

from control_plane.runtime.base import (
    EventSink,
    LaunchedTask,
    LaunchError,
    LaunchRequest,
    RuntimeTask,
    TaskEvent,
)


def proc_start_ticks(pid: int) -> int | None:
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


@dataclass(kw_only=True)
class SupervisedTask:
    task_id: str
    agent: str
    pid: int  # the process this runtime started (the runner, or `buildah run`)
    start_ticks: int
    log_path: str
    process: Any = None  # subprocess.Popen when this control plane started it
    log_file: IO[bytes] | None = None
    version: int = 1
    stop_reason: str | None = None
    stop_requested_at: float | None = None

    # what a record keeps besides the common fields
    PERSISTED: ClassVar[tuple[str, ...]] = ()

    def state(self) -> dict[str, Any]:
        keep = ("task_id", "agent", "pid", "start_ticks", "log_path", "version", "stop_reason")
        return {key: getattr(self, key) for key in keep + self.PERSISTED}


T = TypeVar("T", bound=SupervisedTask)


class SupervisedRuntime(Generic[T]):
    """The bookkeeping half of a runtime; the dataclass that derives from it holds the settings."""

    state_dir: Path
    event_sink: EventSink | None
    poll_interval_s: float

    KIND: ClassVar[str]  # in thread and log names
    CAPACITY: ClassVar[str]  # what LaunchedTask reports
    STATE_SUBDIR: ClassVar[str]  # where the task records are, under state_dir
    CLOSE_POLL_S: ClassVar[float]
    JOIN_TIMEOUT_S: ClassVar[float]

    def _start_supervising(self) -> None:
        self._tasks: dict[str, T] = {}
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._adopt()
        self._monitor = threading.Thread(target=self._watch, name=f"outpost-{self.KIND}-runtime", daemon=True)
        self._monitor.start()

    # -- what each runtime does its own way -----------------------------------------------------

    def _start_task(self, request: LaunchRequest) -> T | LaunchError:
        raise NotImplementedError

    def _restore(self, state: dict[str, Any]) -> T:
        """The task a record describes (ValueError for a record that does not fit)."""
        raise NotImplementedError

    def _terminate(self, task: T) -> None:
        """Ask the task to end (SIGTERM)."""
        raise NotImplementedError

    def _check(self, task: T) -> None:
        """Called by the monitor for every task; reports a task that ended (``_report_stopped``)."""
        raise NotImplementedError

    def _extra(self, task: T) -> dict[str, Any]:
        return {}

    def _shutdown_wait_s(self) -> float:
        """How long ``close`` waits for the stopped tasks to end, unless told."""
        raise NotImplementedError

    def _each_round(self, rounds: int) -> None:
        """Called by the monitor before it checks the tasks."""

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
        self._terminate(task)

    def list_tasks(self) -> list[RuntimeTask]:
        with self._lock:
            return [
                RuntimeTask(
                    runtime_ref=t.task_id,
                    agent=t.agent,
                    task_id=t.task_id,
                    last_status="STOPPING" if t.stop_requested_at else "RUNNING",
                    extra=self._extra(t),
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
            deadline = time.monotonic() + (timeout_s if timeout_s is not None else self._shutdown_wait_s())
            while self._tasks and time.monotonic() < deadline:
                time.sleep(self.CLOSE_POLL_S)
        self._closed.set()
        self._monitor.join(timeout=self.JOIN_TIMEOUT_S)

    # -- internals ---------------------------------------------------------------------------

    @property
    def _log(self) -> logging.Logger:
        return logging.getLogger(type(self).__module__)

    def _launch_one(self, request: LaunchRequest) -> LaunchedTask | LaunchError:
        with self._lock:
            if request.task_id in self._tasks:  # the same launch again: idempotent, like clientToken
                return LaunchedTask(request.task_id, request.task_id, self.CAPACITY)
        task = self._start_task(request)
        if isinstance(task, LaunchError):
            return task
        with self._lock:
            self._tasks[task.task_id] = task
            self._save(task)
        self._emit(task, "RUNNING")
        return LaunchedTask(task.task_id, task.task_id, self.CAPACITY)

    def _state_file(self, task_id: str) -> Path:
        return self.state_dir / self.STATE_SUBDIR / f"{task_id}.json"

    def _save(self, task: T) -> None:
        path = self._state_file(task.task_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(task.state()))
        tmp.replace(path)

    def _adopt(self) -> None:
        """Take over the tasks a previous control plane left running; the monitor reports those
        that died meanwhile."""
        for path in sorted((self.state_dir / self.STATE_SUBDIR).glob("*.json")):
            try:
                task = self._restore(json.loads(path.read_text()))
            except (OSError, ValueError):
                path.unlink(missing_ok=True)
                continue
            if task.stop_reason:
                task.stop_requested_at = time.monotonic()
            self._tasks[task.task_id] = task

    def _alive(self, task: T) -> bool:
        if task.process is not None:
            return task.process.poll() is None
        return proc_start_ticks(task.pid) == task.start_ticks

    def _watch(self) -> None:
        rounds = 0
        while not self._closed.wait(self.poll_interval_s):
            rounds += 1
            self._each_round(rounds)
            for task in list(self._tasks.values()):
                try:
                    self._check(task)
                except Exception:  # the watcher must never die
                    self._log.exception("checking %s task %s failed", self.KIND, task.task_id)

    def _report_stopped(self, task: T) -> None:
        """The task ended and nothing of it lives on: report it and forget it."""
        exit_code = task.process.returncode if task.process is not None else None
        if task.log_file is not None:
            task.log_file.close()
        with self._lock:
            self._tasks.pop(task.task_id, None)
        self._emit(task, "STOPPED", exit_code=exit_code)
        self._state_file(task.task_id).unlink(missing_ok=True)

    def _emit(self, task: T, status: str, exit_code: int | None = None) -> None:
        task.version += 1
        if status != "STOPPED":
            with self._lock:
                if task.task_id in self._tasks:
                    self._save(task)
        stopped = status == "STOPPED"
        event = task_state_event(
            task_arn=task.task_id,
            agent=task.agent,
            task_id=task.task_id,
            last_status=status,
            version=task.version,
            stop_code=(
                None if not stopped else ("UserInitiated" if task.stop_reason else "EssentialContainerExited")
            ),
            stopped_reason=(
                None
                if not stopped
                else (task.stop_reason or f"Essential container in task exited (exit code {exit_code})")
            ),
            exit_code=exit_code,
        )
        if self.event_sink is not None:
            try:
                self.event_sink(event)
            except Exception:  # the reconciler catches what a lost event misses
                self._log.exception("could not deliver the event of task %s", task.task_id)


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
