"""Running child processes in their own process group, under a deadline and a stop signal.

Every process the runner starts (git, the agent) leads a new session, so that the runner can
stop the whole tree: SIGTERM to the group, a grace period, then SIGKILL, and nothing of the
job outlives it. The runner makes itself a child subreaper, so orphaned descendants are
re-parented to it and reaped here rather than left as zombies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from agents.runner.hardening import harden

_READ_BYTES = 64 * 1024
_LINE_MAX_BYTES = 4 * 1024 * 1024


def harden_runner() -> None:
    """agents/runner/hardening.py, which ``python -m agents.runner`` applies before main();
    again here for callers of main() itself."""
    harden()


class StoppedError(Exception):
    """The runner was asked to stop (SIGTERM) while the process ran."""


class DeadlineError(Exception):
    """The job's deadline passed while the process ran."""


@dataclass(frozen=True)
class AgentExit:
    exit_code: int | None  # None when the runner stopped the agent
    timed_out: bool = False
    interrupted: bool = False
    killed_by: str | None = None  # a signal the runner did not send (e.g. the OOM killer)
    start_error: str | None = None


def run_agent(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    deadline: float,
    stop: threading.Event,
    kill_grace_s: float,
    on_line: Callable[[str], None],
) -> AgentExit:
    """Runs the agent with stdin closed and stdout+stderr merged; each output line goes to
    ``on_line`` as it arrives."""
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return AgentExit(exit_code=None, start_error=f"cannot start {argv[0]!r}: {exc.strerror or exc}")
    assert proc.stdout is not None
    reader = threading.Thread(target=_pump, args=(proc.stdout, on_line), name="agent-output", daemon=True)
    reader.start()
    timed_out = interrupted = False
    while True:
        try:
            proc.wait(timeout=0.1)
            break
        except subprocess.TimeoutExpired:
            pass
        if stop.is_set():
            interrupted = True
            break
        if time.monotonic() >= deadline:
            timed_out = True
            break
    # Also after a normal exit: background processes the agent left behind end with the job.
    stop_group(proc, grace_s=kill_grace_s if (timed_out or interrupted) else 0.0)
    reader.join(timeout=5)
    if timed_out or interrupted:
        return AgentExit(exit_code=None, timed_out=timed_out, interrupted=interrupted)
    code = proc.returncode
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        return AgentExit(exit_code=128 - code, killed_by=name)
    return AgentExit(exit_code=code)


def run_captured(
    argv: Sequence[str],
    *,
    cwd: Path | None,
    env: Mapping[str, str],
    deadline: float,
    stop: threading.Event,
) -> subprocess.CompletedProcess[bytes]:
    """Runs a helper command (git) to completion; raises StoppedError or DeadlineError."""
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    result: dict[str, bytes] = {}
    collector = threading.Thread(
        target=lambda: result.update(zip(("out", "err"), proc.communicate(), strict=True))
    )
    collector.start()
    while collector.is_alive():
        collector.join(timeout=0.1)
        if stop.is_set() or time.monotonic() >= deadline:
            stop_group(proc, grace_s=0.0)
            collector.join(timeout=5)
            raise StoppedError() if stop.is_set() else DeadlineError()
    stop_group(proc, grace_s=0.0)
    return subprocess.CompletedProcess(
        list(argv), proc.returncode, result.get("out", b""), result.get("err", b"")
    )


def stop_group(proc: subprocess.Popen[bytes], *, grace_s: float) -> None:
    """SIGTERM the process group, wait up to ``grace_s`` for the leader, SIGKILL the group,
    and wait until no member is left (reaping the ones re-parented to the runner)."""
    pgid = proc.pid
    if grace_s > 0 and proc.poll() is None:
        _signal_group(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(pgid, signal.SIGKILL)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    give_up = time.monotonic() + 5
    while time.monotonic() < give_up:
        _reap_group(pgid)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        time.sleep(0.02)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _reap_group(pgid: int) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-pgid, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _pump(stream: IO[bytes], on_line: Callable[[str], None]) -> None:
    """Whole lines (a JSON event stays one line) up to _LINE_MAX_BYTES, then split."""
    pending = b""
    with stream:
        for chunk in iter(lambda: stream.readline(_READ_BYTES), b""):
            pending += chunk
            if chunk.endswith(b"\n") or len(pending) >= _LINE_MAX_BYTES:
                on_line(pending.decode("utf-8", "replace").rstrip("\r\n"))
                pending = b""
        if pending:
            on_line(pending.decode("utf-8", "replace"))
