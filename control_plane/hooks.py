"""What the API needs from the dispatch engine's runtime, as a protocol.

The dispatch engine implements `TaskControl` (on top of its runtime, control_plane/runtime/,
which maps Outpost task ids to ECS task ARNs or local processes) and hands it to
`create_app(settings, task_control=...)`, or sets `app.state.task_control`. Until one is
attached, `NoTaskControl` answers: cancelling a running dispatch then fails loudly with 503
instead of pretending the task was stopped.
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
class TaskControl(Protocol):
    def stop_task(self, task_id: str, *, reason: str) -> None:
        """Stop the task running a dispatch; returns once the stop was requested.

        Must be idempotent (stopping a task that already stopped is fine) and raise on failure,
        so that the dispatch is not recorded CANCELLED while its task keeps running.
        """
        ...

    def pools(self) -> Mapping[str, PoolStatus]:
        """Per agent, the current task pool (for /health/fleet)."""
        ...


def agent_unavailable(control: TaskControl, agent: str) -> str | None:
    """Why ``agent`` cannot run on the attached runtime (local mode: its CLI is not on the
    host's PATH, or, with containers, its image is not built), or None. Optional: a task control without the check can run every agent."""
    check = getattr(control, "agent_unavailable", None)
    return check(agent) if check is not None else None


def work_arrived(control: TaskControl) -> None:
    """Tell the engine there is new work (a dispatch queued, a run slot freed), so that it
    admits and scales now rather than at its next pass. Optional: without it the work waits
    for the engine's interval."""
    wake = getattr(control, "work_arrived", None)
    if wake is not None:
        wake()


class NoTaskControl:
    """Stands in until the engine attaches its task control."""

    def stop_task(self, task_id: str, *, reason: str) -> None:
        raise RuntimeUnavailableError("no runtime is attached to this control plane")

    def pools(self) -> Mapping[str, PoolStatus]:
        return {}
