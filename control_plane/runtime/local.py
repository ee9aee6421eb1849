"""The local runtime: each agent task is the runner as a subprocess in a temporary workspace.

Used by ``outpost dev`` and the tests. The claim protocol and the runner code are the ones the
ECS runtime uses; only the process around them differs:

- a task is ``python -m agents.runner`` in its own session (process group), with the runner's
  environment (docs/design.md) and, from the host, only what ``host_environment`` lets through:
  a short allowlist (PATH, locale, time zone, proxy and CA bundle variables) and the agent's
  settings (model, endpoint, extra variables) — never a provider key (the model gateway adds
  it, docs/model-gateway.md: the agent gets its dispatch's gateway token from the claim) nor
  the rest of the host's environment (other keys, cloud credentials, tokens);
- ``agent_unavailable`` tells the API, at dispatch, that the agent's CLI is not on the PATH
  a task would get, or that its provider key is not in the environment the gateway reads it
  from (the control plane's), so the caller hears it at once instead of from a FAILED job;
- ``stop`` sends SIGTERM to the task's process group and to every descendant that left it,
  then SIGKILL after a grace period;
- task-state changes are reported as events in the shape of ECS "Task State Change" events
  (``detail.version`` rising per task), so the status tracker treats both runtimes alike;
- tasks are recorded in a state directory, so a restarted control plane adopts the tasks that
  outlived it (they keep running: they are not children of the control plane's session).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from agents.agent_settings import AgentSettings, agent_environment
from agents.registry import AGENTS
from control_plane.runtime.base import EventSink, LaunchError, LaunchRequest
from control_plane.runtime.provider_keys import missing_key_variable
from control_plane.runtime.supervised import SupervisedRuntime, SupervisedTask
from control_plane.runtime.supervised import proc_start_ticks as _proc_start_ticks
from control_plane.runtime.supervised import task_state_event as task_state_event  # re-exported

log = logging.getLogger(__name__)

RUNNER_COMMAND = (sys.executable, "-m", "agents.runner")
# What a local task may take from the host's environment (README, "Running the real agents on
# this host"). HOME and TMPDIR are not among them: the runner gives the agent its own in the
# job's scratch space.
_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")  # curl and others read either case
_CA_BUNDLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")
HOST_ALLOWLIST = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        *_PROXIES,
        *(p.lower() for p in _PROXIES),
        *_CA_BUNDLES,
        "GIT_SSL_CAINFO",
    }
)
HOST_ALLOWED_PREFIXES = ("LC_",)  # locale categories


def host_environment(agent: str, host: Mapping[str, str], settings: AgentSettings | None) -> dict[str, str]:
    """A local task's environment from the host: the allowlist and the agent's settings.
    Nothing else of the host reaches the runner or the agent: no provider key either."""
    env = {k: v for k, v in host.items() if k in HOST_ALLOWLIST or k.startswith(HOST_ALLOWED_PREFIXES)}
    env.update(agent_environment(settings))
    return env


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
class _Task(SupervisedTask):
    workspace: str
    # descendants seen so far (pid -> start ticks): after the runner dies its orphans are
    # re-parented away, so they are remembered while the runner lives
    known: dict[int, int] = field(default_factory=dict)

    PERSISTED: ClassVar[tuple[str, ...]] = ("workspace",)


@dataclass
class LocalRuntime(SupervisedRuntime[_Task]):
    state_dir: Path
    control_plane_url: str = ""
    event_sink: EventSink | None = None
    command: tuple[str, ...] = RUNNER_COMMAND
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. runner tuning variables
    agent_settings: Mapping[str, AgentSettings] = field(default_factory=dict)
    host_env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    stop_grace_s: float = 5.0
    poll_interval_s: float = 0.1
    name: str = "local"

    KIND: ClassVar[str] = "local"
    CAPACITY: ClassVar[str] = "LOCAL"
    STATE_SUBDIR: ClassVar[str] = "tasks"
    CLOSE_POLL_S: ClassVar[float] = 0.05
    JOIN_TIMEOUT_S: ClassVar[float] = 5

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        (self.state_dir / "tasks").mkdir(parents=True, exist_ok=True)
        (self.state_dir / "workspaces").mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        self._start_supervising()

    # -- introspection (tests, `outpost dev`) ----------------------------------------------

    def pid_of(self, task_id: str) -> int | None:
        with self._lock:
            task = self._tasks.get(task_id)
            return task.pid if task else None

    def log_path(self, task_id: str) -> Path | None:
        with self._lock:
            task = self._tasks.get(task_id)
            return Path(task.log_path) if task else None

    def agent_unavailable(self, agent: str) -> str | None:
        """Why a task of ``agent`` could not run its CLI here (it is not on the task's PATH, or
        its provider key is not in the environment), or None. Local tasks run the CLI
        installed on the host, unlike the images."""
        command = AGENTS[agent].command[0]
        environment = self._task_environment(agent)
        if not shutil.which(command, path=environment.get("PATH", "")):
            return (
                f"agent '{agent}' is not installed on this host: put `{command}` on PATH "
                '(README, "Running the real agents on this host"), or use --runtime container'
            )
        return missing_key_variable(agent, self.host_env)  # where the gateway reads it

    def _task_environment(self, agent: str) -> dict[str, str]:
        env = host_environment(agent, self.host_env, self.agent_settings.get(agent))
        env.update(self.extra_env)
        return env

    # -- internals ---------------------------------------------------------------------------

    def _start_task(self, request: LaunchRequest) -> _Task | LaunchError:
        import subprocess

        workspace = self.state_dir / "workspaces" / request.task_id
        workspace.mkdir(parents=True, exist_ok=True)
        log_path = self.state_dir / "logs" / f"{request.task_id}.log"
        env = self._task_environment(request.agent)
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
        return _Task(
            task_id=request.task_id,
            agent=request.agent,
            pid=process.pid,
            start_ticks=_proc_start_ticks(process.pid) or 0,
            workspace=str(workspace),
            log_path=str(log_path),
            process=process,
            log_file=log_file,
        )

    def _restore(self, state: dict[str, Any]) -> _Task:
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
        log.info("adopted local task %s (pid %s)", task.task_id, task.pid)
        return task

    def _extra(self, task: _Task) -> dict[str, Any]:
        return {"pid": task.pid}

    def _shutdown_wait_s(self) -> float:
        return self.stop_grace_s + 5

    def _remember_descendants(self) -> None:
        children = _children_map()
        for task in list(self._tasks.values()):
            if not self._alive(task):
                continue
            for pid in _descendants(task.pid, children):
                ticks = _proc_start_ticks(pid)
                if ticks is not None:
                    task.known[pid] = ticks

    def _terminate(self, task: _Task) -> None:
        self._signal(task, signal.SIGTERM)

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

    def _each_round(self, rounds: int) -> None:
        if self._tasks and rounds % 5 == 0:  # a /proc scan twice a second is plenty
            try:
                self._remember_descendants()
            except Exception:
                log.exception("listing the processes of local tasks failed")

    def _check(self, task: _Task) -> None:
        if self._alive(task):
            if task.stop_requested_at and time.monotonic() - task.stop_requested_at > self.stop_grace_s:
                self._signal(task, signal.SIGKILL)
            return
        # The runner exited: make sure nothing it started lives on, then report and clean up.
        self._signal(task, signal.SIGKILL)
        self._report_stopped(task)
        shutil.rmtree(task.workspace, ignore_errors=True)
