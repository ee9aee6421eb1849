"""What the runner does to itself first, before it reads a setting or starts a process.

The runner's environment holds what the agent must not have: the claim token, the control
plane's address, whatever ECS injected. The agent's own environment is built without them
(redact.child_environment), but ``/proc/<pid>/environ`` keeps a process's environment as it
was started, and any process of the same uid may read it, the agent included. A process that
is not dumpable (prctl PR_SET_DUMPABLE 0) has its environ, memory and file descriptors in
/proc closed to every process without CAP_SYS_PTRACE, and the agent task drops every
capability. Agent tasks run no init process (constructs/agent_task.py), so the runner is
PID 1 and no other process keeps the container's environment.

The runner is also a child subreaper: orphans of the job re-parent to it (it is PID 1 on ECS
anyway) and are reaped there (process.py).
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36


class HardeningError(OSError):
    """Linux refused a setting: the runner must not run a job without it."""


def harden() -> None:
    """Makes the calling process non-dumpable and a child subreaper. Linux only: elsewhere
    (a developer's macOS running the local mode) there is no /proc to protect."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for option, value in ((PR_SET_CHILD_SUBREAPER, 1), (PR_SET_DUMPABLE, 0)):
        if libc.prctl(option, value, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise HardeningError(errno, f"prctl({option}, {value}): {os.strerror(errno)}")
    if libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise HardeningError(0, "the runner is still dumpable")
