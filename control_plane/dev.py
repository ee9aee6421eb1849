"""``outpost dev``: the whole of Outpost on one machine, with no AWS account.

The command (a supervisor process) starts, on loopback:

1. the embedded AWS emulator (moto server) and, in it, the tables, queues and bucket of
   control_plane/schema.py (control_plane.bootstrap);
2. a default tenant;
3. the control plane with the dispatch engine and a runtime, as a child process: the local
   runtime (the runner as a host process), or with ``--runtime container`` the container
   runtime (control_plane/runtime/container.py: the agent image with the constraints of the
   Dev stage's synthesized task definitions, read from ``--cdk-out`` or synthesized first).

Then it prints ``export OUTPOST_URL=...``, ``export OUTPOST_API_KEY=...`` and ``export OUTPOST_ADMIN_KEY=...`` on
stdout (nothing else goes to stdout; logs go to stderr) and serves until Ctrl-C or SIGTERM,
which stop the control plane (and with it every local task) and the emulator.

The emulator lives in the supervisor, so a control plane that dies is restarted on the same
port with all state intact; agent tasks run in their own sessions, outlive it, and are
adopted by the new one (the local runtime's state directory). The control plane's pid is in
``<state dir>/control-plane.pid``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

# Engine timings for local mode: short, so a laptop (and the end-to-end tests) see results fast.
# The scaler runs at once for a new dispatch (Engine.wake), so its interval only paces the
# warm pool's refills: each pass is some twenty emulator calls, a fifth of a core every 0.5 s.
LOCAL_DEFAULTS = {
    "OUTPOST_SCALE_INTERVAL_S": "2",
    "OUTPOST_RECONCILE_INTERVAL_S": "5",
    "OUTPOST_CLAIM_LONG_POLL_S": "10",
    "OUTPOST_TIMEOUT_GRACE_S": "5",
    "OUTPOST_LAUNCH_GRACE_S": "15",
    "OUTPOST_LEASE_S": "10",
    "OUTPOST_LOCAL_STOP_GRACE_S": "3",
}
DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "outpost-local",
    "AWS_SECRET_ACCESS_KEY": "outpost-local",  # noqa: S105 - the emulator accepts any credentials
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _say(message: str) -> None:
    print(f"outpost dev: {message}", file=sys.stderr, flush=True)


RUNTIMES = ("local", "container")


class DevSupervisor:
    def __init__(
        self,
        *,
        port: int | None,
        state_dir: Path | None,
        runtime: str = "local",
        cdk_out: Path | None = None,
        allow_local_repos: Path | None = None,
    ) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r} (known: {', '.join(RUNTIMES)})")
        self.runtime = runtime
        self.cdk_out = cdk_out
        self.allow_local_repos = allow_local_repos
        self.port = port or _free_port()
        self._own_state = state_dir is None
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="outpost-dev-"))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self._stopping = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None
        self._moto: Any = None
        self._resources: Any = None

    # -- start -------------------------------------------------------------------------------

    def start_emulator(self) -> str:
        from control_plane.emulator import EmulatorServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per emulator request

        self._moto = EmulatorServer()
        self._moto.start()
        return str(self._moto.url)

    def prepare(self) -> dict[str, str]:
        """Emulator, resources, admin key, default tenant; returns the control plane's env."""
        # Local mode never uses real AWS credentials, not even toward the loopback emulator.
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[key]
        os.environ.update(DUMMY_AWS)
        endpoint = self.start_emulator()
        from control_plane.bootstrap import ensure_resources

        resources = ensure_resources(endpoint_url=endpoint)
        saved = self._saved_keys()
        restored = 0
        if not self._own_state:
            from control_plane import dev_state

            restored = dev_state.restore(self.state_dir, endpoint_url=endpoint, resources=resources)
            if restored:
                _say(f"restored {restored} items and objects from {self.state_dir}")
        self._resources = resources
        admin_key = (
            os.environ.get("OUTPOST_ADMIN_KEY")
            or saved.get("admin_key")
            or "op_admin_" + secrets.token_urlsafe(32)
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OUTPOST_")},
            **{k: os.environ[k] for k in LOCAL_DEFAULTS if k in os.environ},
            **{k: v for k, v in os.environ.items() if k.startswith("OUTPOST_") and k != "OUTPOST_URL"},
            **resources.as_env(),
            "OUTPOST_ENV": "local",
            "OUTPOST_RUNTIME": "local",
            "OUTPOST_AWS_ENDPOINT_URL": endpoint,
            "OUTPOST_ADMIN_KEY": admin_key,
            "OUTPOST_INTERNAL_URL": self.url,
            "OUTPOST_LOCAL_STATE_DIR": str(self.state_dir / "runtime"),
            # a restarted control plane takes its leases back at once instead of waiting them out
            "OUTPOST_ENGINE_OWNER": f"outpost-dev-{os.getpid()}",
        }
        for key, value in LOCAL_DEFAULTS.items():
            env.setdefault(key, value)
        env.pop("OUTPOST_API_KEY", None)
        # file:// repositories only with the flag, never from a variable left in the shell
        env.pop("OUTPOST_ALLOW_LOCAL_REPOS", None)
        if self.allow_local_repos is not None:
            env["OUTPOST_ALLOW_LOCAL_REPOS"] = str(Path(self.allow_local_repos).resolve())
        if self.runtime == "container":
            env.update(self._container_env())
        self.env = env
        self.admin_key = admin_key
        self.api_key = (
            saved.get("api_key") if restored and saved.get("api_key") else self._default_tenant(env)
        )
        if not self._own_state:
            keys = self.state_dir / "keys.json"
            keys.touch(mode=0o600)
            keys.write_text(json.dumps({"admin_key": admin_key, "api_key": self.api_key}))
        return env

    def _saved_keys(self) -> dict[str, str]:
        """The keys an earlier run with this --state-dir printed, so that they keep working."""
        try:
            return dict(json.loads((self.state_dir / "keys.json").read_text()))
        except (OSError, ValueError):
            return {}

    def _container_env(self) -> dict[str, str]:
        """Checks the image and the task definitions the container runtime needs, up front."""
        from agents.registry import AGENTS
        from control_plane.runtime.buildah import Buildah, default_storage
        from control_plane.runtime.container import image_ref
        from control_plane.runtime.container_spec import load_agent_settings, load_specs, synthesize

        tag = os.environ.get("OUTPOST_CONTAINER_IMAGE_TAG", "latest")
        image = AGENTS["shell"].image
        if Buildah(default_storage()).image_config(image_ref(image, tag)) is None:
            raise RuntimeError(
                f"no image {image_ref(image, tag)}: build it with "
                f"`ENGINE=buildah agents/images/scripts/build-images.sh {image}`"
            )
        cdk_out = self.cdk_out
        if cdk_out is None:
            _say("synthesizing the Dev stage for its task definitions (pass --cdk-out to reuse one)")
            cdk_out = synthesize(self.state_dir / "cdk.out")
        load_specs(cdk_out)  # fails here, in one line, rather than in the control plane
        env = {
            "OUTPOST_DEV_RUNTIME": "container",
            "OUTPOST_CONTAINER_CDK_OUT": str(Path(cdk_out).resolve()),
            "OUTPOST_CONTAINER_IMAGE_TAG": tag,
        }
        if os.environ.get("OUTPOST_AGENT_SETTINGS"):
            # local mode's own settings replace the Dev stage's in every container (say, a
            # model server on loopback over http, which a deployed stage refuses)
            env["OUTPOST_CONTAINER_REPLACE_AGENT_SETTINGS"] = "true"
        else:
            # the Dev stage's settings, which its task definitions carry into the containers
            env["OUTPOST_AGENT_SETTINGS"] = json.dumps(load_agent_settings(cdk_out))
        return env

    def _default_tenant(self, env: dict[str, str]) -> str:
        from control_plane.aws import make_clients
        from control_plane.settings import Settings
        from control_plane.store import Actor, Stores

        saved = dict(os.environ)
        os.environ.update(env)
        try:
            settings = Settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        stores = Stores.from_settings(settings, make_clients(settings))
        _, api_key = stores.tenants.create(
            name="default",
            max_running=settings.default_max_running,
            max_queued=settings.default_max_queued,
            allowed_agents=None,
            actor=Actor.system("outpost-dev"),
        )
        return api_key

    def spawn(self) -> None:
        self._child = subprocess.Popen(
            [sys.executable, "-m", "control_plane.dev", "--serve", str(self.port)],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=sys.stderr.fileno(),  # stdout stays for the three lines (and EMF goes to stderr)
            start_new_session=True,  # Ctrl-C reaches the supervisor, which stops it in order
        )
        # written beside and renamed into place: a reader never sees the file empty
        pid_file = self.state_dir / "control-plane.pid"
        written = pid_file.with_name(pid_file.name + ".tmp")
        written.write_text(str(self._child.pid))
        written.replace(pid_file)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._child is not None and self._child.poll() is not None:
                raise RuntimeError(f"the control plane exited with {self._child.returncode} while starting")
            try:
                if httpx.get(f"{self.url}/health/live", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the control plane did not become ready")

    # -- run ---------------------------------------------------------------------------------

    def check_port(self) -> None:
        """Refuses a port in use before anything starts, so that no key is printed for a
        server that would never serve (the one already there would refuse those keys)."""
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                sock.bind(("127.0.0.1", self.port))
            except OSError:
                raise RuntimeError(
                    f"port {self.port} on 127.0.0.1 is in use (another outpost dev?); "
                    "choose another --port, or leave it out for a free one"
                ) from None

    def run(self) -> int:
        self.check_port()
        self.prepare()
        self.spawn()
        self.wait_ready()
        # `export` lines: paste them into another shell, or `eval` them from a file
        sys.stdout.write(
            f"export OUTPOST_URL={self.url}\n"
            f"export OUTPOST_API_KEY={self.api_key}\n"
            f"export OUTPOST_ADMIN_KEY={self.admin_key}\n"
        )
        sys.stdout.flush()
        _say(f"serving on {self.url} (state in {self.state_dir}); Ctrl-C stops")
        while not self._stopping.wait(0.2):
            child = self._child
            if child is not None and child.poll() is not None and not self._stopping.is_set():
                _say(f"the control plane exited ({child.returncode}); restarting it")
                self.spawn()
                try:
                    self.wait_ready()
                except RuntimeError as error:
                    _say(str(error))
        self.shutdown()
        return 0

    def request_stop(self, *_: object) -> None:
        self._stopping.set()

    def shutdown(self) -> None:
        child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if self._moto is not None and self._resources is not None and not self._own_state:
            from control_plane import dev_state

            try:
                kept = dev_state.save(self.state_dir, endpoint_url=self._moto.url, resources=self._resources)
                _say(f"kept {kept} items and objects in {self.state_dir}")
            except Exception as error:  # the previous snapshot stays whole
                _say(f"could not keep the state: {error}")
        # The emulator is not stopped: its server would join every open request thread first,
        # SQS long polls included (seconds), and it dies with this process anyway.
        if self._own_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        _say("stopped")


def run_dev(
    port: int | None = None,
    state_dir: Path | None = None,
    runtime: str = "local",
    cdk_out: Path | None = None,
    allow_local_repos: Path | None = None,
) -> int:
    supervisor = DevSupervisor(
        port=port, state_dir=state_dir, runtime=runtime, cdk_out=cdk_out, allow_local_repos=allow_local_repos
    )
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    try:
        code = supervisor.run()
    except Exception as error:
        _say(f"failed: {error}")
        supervisor.shutdown()
        code = 1
    # Everything is stopped and saved; skip the interpreter's teardown of the emulator's
    # threads and state, which took longer than the stop itself.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve(port: int) -> None:
    """The control-plane child: API + engine + runtime on loopback."""
    import uvicorn

    from control_plane.engine.app import create_engine_app
    from control_plane.observability import configure_logging

    configure_logging()
    if os.environ.get("OUTPOST_DEV_RUNTIME") == "container":
        from control_plane.engine.config import EngineSettings
        from control_plane.runtime.container import container_runtime

        engine = EngineSettings()
        runtime = container_runtime(
            state_dir=Path(os.environ["OUTPOST_LOCAL_STATE_DIR"]),
            control_plane_url=os.environ["OUTPOST_INTERNAL_URL"],
            extra_env={"OUTPOST_IDLE_TIMEOUT_S": str(engine.runner_idle_timeout_s)},
            workspace=engine.ecs_workspace,
            local_repos=Path(repos) if (repos := os.environ.get("OUTPOST_ALLOW_LOCAL_REPOS")) else None,
        )
        app = create_engine_app(engine_settings=engine, runtime=runtime)
        runtime.event_sink = app.state.engine.deliver_event  # the engine exists only now
    else:
        app = create_engine_app()
    logging.getLogger("uvicorn.error").addFilter(_quiet_shutdown)
    # The requests still open at a stop are the idle runners' claim long polls: not worth a wait.
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=0.2)  # type: ignore[arg-type]  # typed int, used as asyncio.wait_for's float


def _quiet_shutdown(record: logging.LogRecord) -> bool:
    """Drops uvicorn's report of the claim long polls it cancels at a stop (a traceback each)."""
    cancelled = record.exc_info is not None and isinstance(record.exc_info[1], asyncio.CancelledError)
    return not cancelled and "timeout graceful shutdown exceeded" not in record.getMessage()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        with contextlib.suppress(KeyboardInterrupt):
            serve(int(sys.argv[2]))
    else:
        sys.exit(run_dev())
