"""Running child processes in their own process group, under a deadline and a stop signal.

Every process the runner starts (git, the agent) leads a new session, so that the runner can
stop the whole tree: SIGTERM to the group, a grace period, then SIGKILL, and nothing of the
job outlives it. The runner is a child subreaper (hardening.py) and, on ECS, PID 1 (no init
process): orphaned descendants re-parent to it and are reaped here rather than left as zombies,
without taking the exit status of a process the runner itself waits for.
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
# The processes the runner started and waits for through their Popen: never reaped elsewhere.
_waited_for: set[int] = set()
_waited_for_lock = threading.Lock()


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
    _track(proc.pid)
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
        reap_orphans()
    # Also after a normal exit: background processes the agent left behind end with the job.
    stop_group(proc, grace_s=kill_grace_s if (timed_out or interrupted) else 0.0)
    _untrack(proc.pid)
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
    _track(proc.pid)
    result: dict[str, bytes] = {}
    collector = threading.Thread(
        target=lambda: result.update(zip(("out", "err"), proc.communicate(), strict=True))
    )
    collector.start()
    while collector.is_alive():
        collector.join(timeout=0.1)
        if stop.is_set() or time.monotonic() >= deadline:
            stop_group(proc, grace_s=0.0)
            _untrack(proc.pid)
            collector.join(timeout=5)
            raise StoppedError() if stop.is_set() else DeadlineError()
    stop_group(proc, grace_s=0.0)
    _untrack(proc.pid)
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


def reap_orphans() -> None:
    """Reaps every exited child that no Popen of the runner waits for: a process the agent
    detached into its own session, whose parent is gone, is the runner's child now, and
    would stay a zombie until the task ends. WNOWAIT looks before it reaps, so the exit
    status of the agent (or of git) is left for its Popen to read."""
    while True:
        try:
            exited = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if exited is None:
            return
        with _waited_for_lock:
            if exited.si_pid in _waited_for:
                return  # its Popen reaps it; the others wait for the next call
            try:
                os.waitpid(exited.si_pid, os.WNOHANG)
            except ChildProcessError:
                return


def _track(pid: int) -> None:
    with _waited_for_lock:
        _waited_for.add(pid)


def _untrack(pid: int) -> None:
    with _waited_for_lock:
        _waited_for.discard(pid)


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
