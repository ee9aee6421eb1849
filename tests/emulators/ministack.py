"""ministack, the local AWS emulator that accepts the ECS runtime's production calls unchanged
(RunTask with awsvpc and capacity providers, StopTask, ListTasks, DescribeTasks).

It pins its own botocore, so `make setup` installs it in a virtual environment of its own
(.venv-ministack, from tests/emulators/ministack.lock); this module starts it as a process on a
free loopback port and stops it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXECUTABLE = ROOT / ".venv-ministack" / "bin" / "ministack"
START_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_ministack/health", timeout=1) as reply:  # noqa: S310 - loopback
            return bool(reply.status == 200)
    except OSError:
        return False


@contextmanager
def running_ministack(log_path: Path) -> Iterator[str]:
    """A ministack process on loopback; yields its endpoint URL once it answers."""
    if not EXECUTABLE.exists():
        raise RuntimeError(f"{EXECUTABLE} is missing: run `make setup` (it installs the ECS emulator)")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "GATEWAY_PORT": str(port), "BIND_HOST": "127.0.0.1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our pinned emulator, no shell
            [str(EXECUTABLE)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=log_path.parent
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not _answers(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ministack did not start; see {log_path}")
                time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
