"""The container runtime: each agent task runs in the real agent image with its task
definition's constraints, through buildah (chroot isolation) where no Docker engine runs.

What the synthesized task definition says (control_plane/runtime/container_spec.py) is what a
task gets:

- the user (``buildah run --user``), the capabilities (``--cap-drop``/``--cap-add``);
- a read-only root file system: the container's root is bind-mounted read-only onto itself
  before ``buildah run`` (buildah 1.28 has no ``--read-only``); ``/run`` is a per-task
  root-owned copy, because buildah removes its ``/run/.containerenv`` after each run;
- one fresh host directory per task volume, bind-mounted at each mount point; the image's
  own ``VOLUME`` declarations are removed from the container, and, as Fargate does, a volume
  whose path the image declares as a ``VOLUME`` starts with the image's content and owner
  there, any other starts empty and root-owned;
- the environment as RunTask overrides give it (task definition environment, secrets' values
  from this process's environment under the same names, the request's variables), set with
  ``buildah config --env NAME`` so that no value ever appears on a command line.

Two things of local mode that a deployed stage does not have: `outpost dev
--allow-local-repos DIR` mounts DIR read-only at its own path in every container, and
OUTPOST_AGENT_SETTINGS given to `outpost dev` replace the agent variables the Dev stage's
settings put into the task definitions (docs/agent-settings.md).

Stop: SIGTERM to the container's main process (the runner), SIGKILL to every process of the
container (its mount namespace) after the task definition's stop timeout, and when its
``buildah run`` has exited. With no PID namespace the mount namespace is what tells the
container's processes apart, and its name (an inode number) passes to the next namespace
created once the container's is gone: the runtime holds the namespace open from when it finds
the container's main process until it has removed the container, so no other container can
carry the name meanwhile. Task-state events have the local runtime's shape, so one tracker
serves all runtimes. docs/dispatch-engine.md lists what chroot isolation cannot enforce.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.agent_settings import AgentSettings, agent_environment, parse_agent_settings
from agents.egress import PROXY_VARIABLES
from agents.registry import AGENTS
from control_plane.runtime import buildah as b
from control_plane.runtime.base import EventSink, LaunchError, LaunchRequest
from control_plane.runtime.container_spec import ContainerSpec, load_agent_settings, load_specs
from control_plane.runtime.provider_keys import missing_key_variable
from control_plane.runtime.supervised import SupervisedRuntime, SupervisedTask, proc_start_ticks

log = logging.getLogger(__name__)
EXEC_SHIM = "buildah-chroot-exec"  # buildah's process that starts the container's command


class ContainerSettings(BaseSettings):
    """``OUTPOST_CONTAINER_*``: where the task definitions and the images are."""

    model_config = SettingsConfigDict(env_prefix="OUTPOST_CONTAINER_", frozen=True, extra="ignore")

    cdk_out: Path  # a `cdk synth` output with the Dev stage
    image_tag: str = "latest"  # agents/images/scripts/build-images.sh tags every build :latest too
    # true: OUTPOST_AGENT_SETTINGS (local mode's) replace the agent settings of the Dev stage
    replace_agent_settings: bool = False


def image_ref(image: str, tag: str) -> str:
    return f"localhost/outpost/{image}:{tag}"  # how build-images.sh names buildah images


@dataclass
class _Task(SupervisedTask):  # pid: `buildah run`
    container: str
    rootfs: str
    task_dir: str
    stop_timeout_s: int
    read_only_root: bool
    main_pid: int | None = None
    namespace: str | None = None  # the container's mount namespace, held open by namespace_fd
    terminated: bool = False
    namespace_fd: int | None = None  # this control plane's handle on it; None: not held

    PERSISTED: ClassVar[tuple[str, ...]] = (
        "container",
        "rootfs",
        "task_dir",
        "stop_timeout_s",
        "read_only_root",
        "main_pid",
        "namespace",
    )


@dataclass
class ContainerRuntime(SupervisedRuntime[_Task]):
    state_dir: Path
    specs: dict[str, ContainerSpec]
    image_tag: str = "latest"
    storage: str = field(default_factory=b.default_storage)
    control_plane_url: str = ""
    event_sink: EventSink | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    secret_values: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    workspace: str = "/workspace"  # OUTPOST_WORKSPACE, as the engine sets it for ECS tasks
    # `outpost dev --allow-local-repos DIR`: DIR, mounted read-only at the same path in every
    # container, so that a file:// repository the API admitted is the one the runner clones.
    local_repos: Path | None = None
    # Local mode's agent settings, when `outpost dev` was given OUTPOST_AGENT_SETTINGS: they
    # replace, in every container, the variables the Dev stage's settings (``stage_settings``)
    # put into its task definitions. None: the task definitions' own.
    agent_settings: Mapping[str, AgentSettings] | None = None
    stage_settings: Mapping[str, AgentSettings] = field(default_factory=dict)
    poll_interval_s: float = 0.2
    name: str = "container"

    KIND: ClassVar[str] = "container"
    CAPACITY: ClassVar[str] = "CONTAINER"
    STATE_SUBDIR: ClassVar[str] = "state"
    CLOSE_POLL_S: ClassVar[float] = 0.1
    JOIN_TIMEOUT_S: ClassVar[float] = 10

    def __post_init__(self) -> None:
        if os.geteuid() != 0:
            raise b.BuildahError("the container runtime needs root here (bind mounts, chroot isolation)")
        self.state_dir = Path(self.state_dir)
        for sub in ("state", "tasks", "logs"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        self.buildah = b.Buildah(self.storage)
        self._start_supervising()

    def agent_unavailable(self, agent: str) -> str | None:
        """Why a task of ``agent`` could not start here (its image is not built, or its provider
        key is not in the environment), or None: checked when the dispatch is made, so the
        user gets a 409, not a FAILED job."""
        image = image_ref(AGENTS[agent].image, self.image_tag)
        if self.buildah.image_config(image) is None:
            return f"agent '{agent}' has no image here: {_build_hint(AGENTS[agent].image, self.image_tag)}"
        return missing_key_variable(agent, self.secret_values)  # ECS's secrets, by name

    def container_of(self, task_id: str) -> str | None:
        with self._lock:
            task = self._tasks.get(task_id)
            return task.container if task else None

    # -- launching ---------------------------------------------------------------------------

    def _start_task(self, request: LaunchRequest) -> _Task | LaunchError:
        spec = self.specs.get(request.agent)
        if spec is None:
            return LaunchError(f"agent {request.agent!r} has no task definition in the Dev stage")
        image = image_ref(AGENTS[request.agent].image, self.image_tag)
        config = self.buildah.image_config(image)
        if config is None:
            return LaunchError(
                f"image {image} is not built: {_build_hint(AGENTS[request.agent].image, self.image_tag)}"
            )
        container = f"outpost-{request.task_id}"
        task_dir = self.state_dir / "tasks" / request.task_id
        try:
            return self._start(request, spec, config, image, container, task_dir)
        except (b.BuildahError, subprocess.SubprocessError, OSError) as error:
            self._dismantle(container, str(task_dir))
            return LaunchError(f"could not start the container: {error}")

    def _environment(self, request: LaunchRequest, spec: ContainerSpec) -> dict[str, str]:
        """What ECS gives the container: task definition environment, secrets, overrides."""
        # Local mode runs no egress proxy: the stage's proxy address means nothing on this host.
        env = {name: value for name, value in spec.environment if name not in PROXY_VARIABLES}
        if self.agent_settings is not None:
            for name in agent_environment(self.stage_settings.get(request.agent)):
                env.pop(name, None)
            env.update(agent_environment(self.agent_settings.get(request.agent)))
        env.update({name: self.secret_values[name] for name in spec.secrets if name in self.secret_values})
        env.update(self.extra_env)
        env.update(request.env)
        env.setdefault("OUTPOST_TASK_ID", request.task_id)
        env.setdefault("OUTPOST_AGENT", request.agent)
        env.setdefault("OUTPOST_WORKSPACE", self.workspace)
        if self.control_plane_url:
            env.setdefault("OUTPOST_CONTROL_PLANE_URL", self.control_plane_url)
        return env

    def _start(
        self,
        request: LaunchRequest,
        spec: ContainerSpec,
        config: dict[str, Any],
        image: str,
        container: str,
        task_dir: Path,
    ) -> _Task:
        task_dir.mkdir(parents=True)
        self.buildah("from", "--quiet", "--pull-never", "--name", container, image)
        image_volumes = sorted(config.get("Volumes") or {})
        env = self._environment(request, spec)
        # The task definition's mount points are the only volumes (buildah would otherwise
        # create its own for the image's VOLUMEs); values come from buildah's environment.
        self.buildah(
            "config",
            *[arg for path in image_volumes for arg in ("--volume", f"{path}-")],
            *[arg for name in sorted(env) for arg in ("--env", name)],
            container,
            env={**os.environ, **env},
        )
        rootfs = self.buildah("mount", container)
        run = self.buildah.run_command()
        for mount in spec.mounts:
            host = task_dir / "volumes" / mount.volume
            if not host.exists():
                _init_volume(host, Path(rootfs), mount.path, declared=mount.path in image_volumes)
            run += ["--volume", f"{host}:{mount.path}:{'ro' if mount.read_only else 'rw'}"]
        if self.local_repos is not None:
            run += ["--volume", f"{self.local_repos}:{self.local_repos}:ro"]
        if spec.read_only_root:
            _read_only_root(Path(rootfs), task_dir / "run")
        if spec.user:
            run += ["--user", spec.user]
        run += [arg for cap in spec.cap_drop for arg in ("--cap-drop", cap.lower())]
        run += [arg for cap in spec.cap_add for arg in ("--cap-add", cap.lower())]
        if spec.working_dir:
            run += ["--workingdir", spec.working_dir]
        argv = list(spec.entrypoint or config.get("Entrypoint") or []) + list(
            spec.command or config.get("Cmd") or []
        )
        log_path = self.state_dir / "logs" / f"{request.task_id}.log"
        log_file = open(log_path, "ab")  # noqa: SIM115 - closed when the task exits
        process = subprocess.Popen(
            [*run, container, "--", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith(("OUTPOST_", "AWS_"))},
            start_new_session=True,  # outlives a control-plane crash, like the local runtime's tasks
        )
        return _Task(
            task_id=request.task_id,
            agent=request.agent,
            pid=process.pid,
            start_ticks=proc_start_ticks(process.pid) or 0,
            container=container,
            rootfs=rootfs,
            task_dir=str(task_dir),
            log_path=str(log_path),
            stop_timeout_s=spec.stop_timeout_s,
            read_only_root=spec.read_only_root,
            process=process,
            log_file=log_file,
        )

    # -- watching ----------------------------------------------------------------------------

    def _find_main(self, task: _Task) -> None:
        """The container's main process: the child of buildah's exec shim (the runner); its
        mount namespace is held from now on (``b.hold_namespace``)."""
        if task.main_pid is not None:
            return
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if b.argv0(ppid) == EXEC_SHIM and self._descends(ppid, task.pid):
                pid = int(entry.name)
                started = proc_start_ticks(pid)
                held = b.hold_namespace(pid)
                if held is not None and (started is None or proc_start_ticks(pid) != started):
                    os.close(held[0])  # it exited meanwhile: the namespace held may be another's
                    held = None
                if held is None:
                    return  # gone already: nothing of it is known, and nothing is killed by name
                task.main_pid = pid
                task.namespace_fd, task.namespace = held
                with self._lock:
                    if task.task_id in self._tasks:
                        self._save(task)
                return

    @staticmethod
    def _descends(pid: int, ancestor: int) -> bool:
        for _ in range(8):
            if pid == ancestor:
                return True
            try:
                pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                return False
        return False

    def _terminate(self, task: _Task) -> None:
        """SIGTERM to the runner, as ECS sends it to the container's main process."""
        self._find_main(task)
        if task.main_pid is not None and not task.terminated and self._holds(task):
            task.terminated = True
            # still the runner: a process with its pid in the container's (held) namespace
            if b.mount_namespace(task.main_pid) == task.namespace:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(task.main_pid, signal.SIGTERM)

    def _kill_all(self, task: _Task) -> None:
        """SIGKILL to every process in the container's namespace, if this control plane holds
        it: a namespace name not held may by now be another container's, or a host service's."""
        pids = b.in_namespace(task.namespace) if task.namespace and self._holds(task) else []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    @staticmethod
    def _holds(task: _Task) -> bool:
        return task.namespace_fd is not None

    @staticmethod
    def _release(task: _Task) -> None:
        """Let the kernel free the container's namespace (and its name) once it is empty."""
        if task.namespace_fd is not None:
            with contextlib.suppress(OSError):
                os.close(task.namespace_fd)
            task.namespace_fd = None

    def _check(self, task: _Task) -> None:
        if self._alive(task):
            self._find_main(task)
            if task.stop_requested_at is not None:
                self._terminate(task)  # the runner may not have existed at stop()
                if time.monotonic() - task.stop_requested_at > task.stop_timeout_s:
                    self._kill_all(task)
            return
        # The essential container exited: nothing of it outlives it, then report and clean up.
        self._kill_all(task)
        self._release(task)
        self._dismantle(task.container, task.task_dir, task.rootfs, task.read_only_root)
        self._report_stopped(task)

    def _dismantle(
        self, container: str, task_dir: str, rootfs: str | None = None, read_only: bool = False
    ) -> None:
        if rootfs and read_only:
            b.umount(f"{rootfs}/run")
            b.umount(rootfs)
        with contextlib.suppress(b.BuildahError):
            self.buildah("rm", container)
        shutil.rmtree(task_dir, ignore_errors=True)

    # -- state ---------------------------------------------------------------------------------

    def _restore(self, state: dict[str, Any]) -> _Task:
        """A task a previous control plane recorded. Its main process and namespace are found
        again (``_find_main``) while its ``buildah run`` lives: the namespace named in the
        record was held by that control plane only, and may be another's by now."""
        try:
            task = _Task(**state)
        except TypeError as error:  # not a record of this runtime's tasks
            raise ValueError(error) from error
        task.main_pid = task.namespace = None
        return task

    def _extra(self, task: _Task) -> dict[str, Any]:
        return {"container": task.container}

    def _shutdown_wait_s(self) -> float:
        return max((t.stop_timeout_s for t in self._tasks.values()), default=0) + 10

    def close(self, *, stop_tasks: bool = True, timeout_s: float | None = None) -> None:
        super().close(stop_tasks=stop_tasks, timeout_s=timeout_s)
        if self._monitor.is_alive():
            return  # still checking a task: its handles are the monitor's
        with self._lock:
            for task in self._tasks.values():
                self._release(task)


def _init_volume(host: Path, rootfs: Path, path: str, *, declared: bool) -> None:
    """A fresh task-local volume as Fargate makes it: the image's content and owner at a
    declared VOLUME, else an empty directory owned by root (mode 0755)."""
    source = rootfs / path.lstrip("/")
    if declared and source.is_dir():
        shutil.copytree(source, host, symlinks=True)
        for directory, _, files in os.walk(host):
            for name in [directory, *(os.path.join(directory, f) for f in files)]:
                original = source / os.path.relpath(name, host)
                stat = original.lstat()
                os.lchown(name, stat.st_uid, stat.st_gid)
        host.chmod(source.stat().st_mode & 0o7777)
    else:
        host.mkdir(parents=True)
        host.chmod(0o755)


def _read_only_root(rootfs: Path, run_copy: Path) -> None:
    """The container's root, read-only, with a per-task ``/run`` that only root can write (buildah
    removes its ``/run/.containerenv`` after the command; on a read-only /run that fails)."""
    shutil.copytree(rootfs / "run", run_copy, symlinks=True)
    for directory, dirs, _ in os.walk(run_copy):
        for name in [directory, *(os.path.join(directory, d) for d in dirs)]:
            os.chown(name, 0, 0)
            os.chmod(name, os.stat(name).st_mode & ~0o022)  # lock (1777) and the rest: root only
    b.mount("--bind", str(rootfs), str(rootfs))
    b.mount("-o", "remount,bind,ro", str(rootfs))
    b.mount("--bind", str(run_copy), str(rootfs / "run"))


def _build_hint(image: str, tag: str) -> str:
    return f"build it with `ENGINE=buildah TAG={tag} agents/images/scripts/build-images.sh {image}`"


def container_runtime(
    *,
    state_dir: Path,
    control_plane_url: str,
    extra_env: dict[str, str],
    workspace: str,
    local_repos: Path | None = None,
) -> ContainerRuntime:
    """The runtime ``outpost dev --runtime container`` configures through OUTPOST_CONTAINER_*;
    its event sink is set once the engine that consumes the events exists."""
    settings = ContainerSettings()  # type: ignore[call-arg]  # pydantic-settings reads the env
    replaced = None
    if settings.replace_agent_settings:
        raw = json.loads(os.environ.get("OUTPOST_AGENT_SETTINGS") or "{}")
        replaced = parse_agent_settings(raw, agents=AGENTS, local=True)
    return ContainerRuntime(
        state_dir=state_dir,
        specs=load_specs(settings.cdk_out),
        agent_settings=replaced,
        stage_settings=parse_agent_settings(load_agent_settings(settings.cdk_out), agents=AGENTS),
        image_tag=settings.image_tag,
        control_plane_url=control_plane_url,
        extra_env=extra_env,
        workspace=workspace,
        local_repos=local_repos,
    )
