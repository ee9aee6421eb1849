"""What the API needs from the runtime (ECS Fargate or local processes), as a protocol.

The dispatch engine implements `Runtime` (control_plane/runtime/) and hands it to
`create_app(settings, runtime=...)`, or sets `app.state.runtime` later. Until one is attached,
`NoRuntime` answers: cancelling a running dispatch then fails loudly with 503 instead of
pretending the task was stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class PoolStatus:
    """One agent's tasks as the runtime sees them."""

    size: int  # tasks started for the agent and not yet exited (idle + busy + starting)
    idle: int  # started, waiting to claim a job (the warm pool)


class RuntimeUnavailableError(RuntimeError):
    pass


@runtime_checkable
class Runtime(Protocol):
    def stop_task(self, task_id: str, *, reason: str) -> None:
        """Stop the task running a dispatch; returns once the stop was requested.

        Must be idempotent (stopping a task that already stopped is fine) and raise on failure,
        so that the dispatch is not recorded CANCELLED while its task keeps running.
        """
        ...

    def pools(self) -> Mapping[str, PoolStatus]:
        """Per agent, the current task pool (for /health/fleet)."""
        ...


class NoRuntime:
    """Stands in until the engine attaches its runtime."""

    def stop_task(self, task_id: str, *, reason: str) -> None:
        raise RuntimeUnavailableError("no runtime is attached to this control plane")

    def pools(self) -> Mapping[str, PoolStatus]:
        return {}
