"""Helpers of the end-to-end tests: start and stop `outpost dev`, poll, inspect processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

OUTPOST = Path(sys.executable).with_name("outpost")
FAST = {
    "OUTPOST_SCALE_INTERVAL_S": "1",  # a new dispatch wakes the scaler at once (Engine.wake)
    "OUTPOST_RECONCILE_INTERVAL_S": "2",
    "OUTPOST_CLAIM_LONG_POLL_S": "5",
    "OUTPOST_TIMEOUT_GRACE_S": "1",
    "OUTPOST_LAUNCH_GRACE_S": "10",
    "OUTPOST_LEASE_S": "5",
    "OUTPOST_FLEET_CACHE_S": "0",
    "OUTPOST_IDLE_SCALE_DOWN_S": "3",
}
TERMINAL = {"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"}


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(interval)


@dataclass
class Dev:
    process: subprocess.Popen
    url: str
    api_key: str
    admin_key: str
    state_dir: Path
    stderr_path: Path

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=30
        )

    def dispatch(self, task: str, **fields) -> dict:
        with self.client() as client:
            reply = client.post("/dispatch", json={"agent": "shell", "task": task, **fields})
        assert reply.status_code == 202, reply.text
        return reply.json()

    def get(self, dispatch_id: str) -> dict:
        with self.client() as client:
            reply = client.get(f"/dispatch/{dispatch_id}")
        assert reply.status_code == 200, reply.text
        return reply.json()

    def wait_status(self, dispatch_id: str, statuses: set[str], timeout: float = 30.0) -> dict:
        def reached():
            try:
                record = self.get(dispatch_id)
            except httpx.HTTPError:
                return None  # the control plane may be restarting
            return record if record["status"] in statuses else None

        try:
            return wait_for(reached, timeout, what=f"{dispatch_id} in {statuses}")
        except AssertionError as error:
            try:
                last = self.get(dispatch_id)
            except httpx.HTTPError as http_error:
                last = {"unreadable": str(http_error)}
            tail = self.stderr_path.read_text(errors="replace").splitlines()[-40:]
            raise AssertionError(
                f"{error}; last seen: {last}\noutpost dev stderr:\n" + "\n".join(tail)
            ) from None

    def control_plane_pid(self) -> int:
        return int((self.state_dir / "control-plane.pid").read_text())

    def task_pids(self) -> dict[int, str]:
        """pid -> task id of the local runtime's live tasks (its state files)."""
        pids = {}
        for path in (self.state_dir / "runtime" / "tasks").glob("*.json"):
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            pids[state["pid"]] = state["task_id"]
        return pids


def start_dev(
    state_dir: Path,
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
    args: tuple[str, ...] = (),
) -> Dev:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTPOST_")}
    env.update(FAST)
    env.update(extra_env or {})
    stderr_path = state_dir.parent / f"{state_dir.name}.stderr"
    stderr = stderr_path.open("wb")
    process = subprocess.Popen(
        [str(OUTPOST), "dev", "--state-dir", str(state_dir), *(["--port", str(port)] if port else []), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    lines: dict[str, str] = {}

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            key, _, value = line.strip().removeprefix("export ").partition("=")
            lines[key] = value
            if len(lines) == 3:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=60)
    if set(lines) != {"OUTPOST_URL", "OUTPOST_API_KEY", "OUTPOST_ADMIN_KEY"}:
        process.kill()
        raise AssertionError(f"outpost dev did not print its three lines: {lines}\n{stderr_path.read_text()}")
    return Dev(
        process,
        lines["OUTPOST_URL"],
        lines["OUTPOST_API_KEY"],
        lines["OUTPOST_ADMIN_KEY"],
        state_dir,
        stderr_path,
    )


def stop_dev(dev: Dev) -> int:
    dev.process.send_signal(signal.SIGTERM)
    try:
        return dev.process.wait(timeout=45)
    except subprocess.TimeoutExpired:
        dev.process.kill()
        raise


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def runner_pid_of(dev: Dev, pid: int) -> int:
    """The local task (runner process) that ``pid`` descends from."""
    tasks = dev.task_pids()
    current: int | None = pid
    while current and current > 1:
        if current in tasks:
            return current
        current = parent_of(current)
    raise AssertionError(f"process {pid} does not belong to a local task ({tasks})")


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])
