"""The engine's TaskControl (control_plane.hooks): stop a dispatch's task, report the pools."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from control_plane.engine import tasks as t
from control_plane.hooks import PoolStatus
from control_plane.runtime.base import Runtime

log = logging.getLogger("outpost.engine")


class EngineTaskControl:
    def __init__(
        self,
        *,
        tasks: t.TaskStore,
        runtime: Runtime,
        agents: Iterable[str],
        on_work: Callable[[], None] = lambda: None,
    ) -> None:
        self.tasks = tasks
        self.runtime = runtime
        self.agents = list(agents)
        self.work_arrived = on_work  # hooks.work_arrived: a dispatch queued, a run slot freed

    def stop_task(self, task_id: str, *, reason: str) -> None:
        """Mark the task stopping and ask the runtime to stop it (idempotent; raises on failure)."""
        task = self.tasks.get(task_id)
        if task is None:
            return
        stop(self.tasks, self.runtime, task, reason)

    def agent_unavailable(self, agent: str) -> str | None:
        """Why the runtime cannot run ``agent`` here (hooks.agent_unavailable), or None."""
        check = getattr(self.runtime, "agent_unavailable", None)  # the local and container runtimes
        return check(agent) if check is not None else None

    def pools(self) -> Mapping[str, PoolStatus]:
        pools: dict[str, PoolStatus] = {}
        for agent in self.agents:
            live = self.tasks.live([agent])
            idle = sum(1 for task in live if task.state == t.UNCLAIMED)
            if live:
                pools[agent] = PoolStatus(size=len(live), idle=idle)
        return pools


def stop(tasks: t.TaskStore, runtime: Runtime, task: t.TaskRecord, reason: str) -> None:
    for _ in range(5):
        if task.state in (t.STOPPED,):
            return
        if task.state == t.STOPPING:
            break
        moved = tasks.move(task, t.STOPPING, fields={"stop_reason": reason[:500]})
        if moved is not None:
            task = moved
            break
        fresh = tasks.get(task.task_id)
        if fresh is None:
            return
        task = fresh
    if task.runtime_ref:
        runtime.stop(task.runtime_ref, f"Outpost: {reason}"[:255])
