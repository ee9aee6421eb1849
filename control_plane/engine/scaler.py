"""The scaler and warm pool: per agent, idle + starting tasks >= warm-pool target + queued jobs.

Within limits: at most ``max_tasks_per_agent`` live tasks per agent and ``max_launches_per_tick``
launches per pass (the runtime itself keeps to RunTask's 10 tasks a call and 20 launches a
second). Idle tasks above the target stop once they have idled ``idle_scale_down_s``.

Safe with several control-plane replicas: a pass runs only while its replica holds the
``lease#scaler`` item (a conditional write), and each launch for a queued job first records the
task under an id derived from the launch's deterministic client token (dispatch id + attempt)
with a conditional put, so two writers cannot launch twice for one job even if a lease lapses.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from control_plane.engine import tasks as t
from control_plane.engine.control import stop
from control_plane.engine.metrics import StartMetrics
from control_plane.lifecycle import Status
from control_plane.metrics import LAUNCH_FAILURES, TASKS_LAUNCHED, pool_state
from control_plane.runtime.base import LaunchError, LaunchRequest, Runtime, client_token
from control_plane.store.codec import decode_item, encode, now, parse_iso

log = logging.getLogger("outpost.scaler")


@dataclass(frozen=True)
class Queued:
    dispatch_id: str
    agent: str
    attempt: int
    created_at: str


def queued_jobs(client: Any, table: str) -> dict[str, list[Queued]]:
    """Admitted PENDING dispatches per agent, oldest first (the table's by-status index).

    A dispatch still waiting for one of its tenant's run slots is left out: no task could run
    it yet (control_plane.engine.admission).
    """
    kwargs: dict[str, Any] = {
        "TableName": table,
        "IndexName": "by-status",
        "KeyConditionExpression": "#s = :s",
        "FilterExpression": "#a = :t",
        "ExpressionAttributeNames": {"#s": "status", "#a": "admitted"},
        "ExpressionAttributeValues": {":s": encode(str(Status.PENDING)), ":t": encode(True)},
    }
    jobs: dict[str, list[Queued]] = {}
    while True:
        reply = client.query(**kwargs)
        for raw in reply.get("Items", []):
            item = decode_item(raw)
            jobs.setdefault(item["agent"], []).append(
                Queued(item["dispatch_id"], item["agent"], int(item.get("attempt", 1)), item["created_at"])
            )
        if "LastEvaluatedKey" not in reply:
            return jobs
        kwargs["ExclusiveStartKey"] = reply["LastEvaluatedKey"]


@dataclass
class Scaler:
    client: Any  # DynamoDB
    table: str
    tasks: t.TaskStore
    runtime: Runtime
    lease: t.Lease
    warm_pool: dict[str, int]
    spot: dict[str, bool]
    runner_env: Callable[[str], dict[str, str]]  # agent -> env every task of it gets
    max_tasks_per_agent: int = 50
    max_launches_per_tick: int = 20
    idle_scale_down_s: float = 600.0
    metrics: StartMetrics = field(default_factory=StartMetrics)

    def tick(self) -> dict[str, int] | None:
        """One pass; returns launches per agent, or None when another replica holds the lease."""
        if not self.lease.acquire():
            return None
        queued = queued_jobs(self.client, self.table)
        launched: dict[str, int] = {}
        for agent in self.warm_pool:
            if not self._leading():
                break
            try:
                launched[agent] = self._scale(agent, queued.get(agent, []))
            except Exception:
                log.exception("scaling agent %s failed", agent)
        return launched

    def _leading(self) -> bool:
        """Whether this replica's lease still holds, with a margin for the next step's call."""
        return self.lease.held(margin_s=min(1.0, self.lease.duration_s / 4))

    def _scale(self, agent: str, queued: list[Queued]) -> int:
        live = self.tasks.live([agent])
        unclaimed = [task for task in live if task.state == t.UNCLAIMED]
        running = sum(task.state == t.CLAIMED for task in live)
        pool_state(agent, size=self.warm_pool.get(agent, 0), idle=len(unclaimed), running=running)
        target = self.warm_pool.get(agent, 0) + len(queued)
        room = self.max_tasks_per_agent - len(live)
        need = min(target - len(unclaimed), room, self.max_launches_per_tick)
        if need > 0:
            return self._launch(agent, need, queued)
        excess = len(unclaimed) - target
        if excess > 0:
            self._scale_down(unclaimed, excess)
        return 0

    def _launch(self, agent: str, count: int, queued: list[Queued]) -> int:
        """Record and launch up to ``count`` tasks, one at a time while the lease holds: a pass
        can outlive its lease (RunTask retries and capacity fallbacks take seconds per task),
        and once it has run out another replica may be launching for the same pools."""
        candidates = iter(queued)
        recorded = started = 0
        while recorded < count and self._leading():
            job = next(candidates, None)
            if job is not None and not self._still_queued(job):
                # claimed (or ended) since the pass read the queue, while the tasks were read
                # after: the job counted in ``count`` needs no task, warm or its own
                count -= 1
                continue
            if job is not None:
                token = client_token(job.dispatch_id, job.attempt)
                launched_for = f"{job.dispatch_id}#{job.attempt}"
            else:
                token = client_token(f"warm-{agent}-{uuid.uuid4().hex[:16]}", 1)
                launched_for = "warm"
            task_id = t.new_task_id(token)
            claim_token, token_hash = t.make_token(task_id)
            record = self.tasks.create(
                task_id=task_id,
                agent=agent,
                launched_for=launched_for,
                client_token=token,
                token_hash=token_hash,
            )
            if record is None:
                continue  # already launched for that job (by this or another replica)
            recorded += 1
            env = {
                **self.runner_env(agent),
                "OUTPOST_CLAIM_TOKEN": claim_token,
                "OUTPOST_AGENT": agent,
                "OUTPOST_TASK_ID": task_id,
            }
            request = LaunchRequest(
                agent=agent, task_id=task_id, client_token=token, env=env, spot=self.spot.get(agent, False)
            )
            [result] = self.runtime.launch([request])
            if isinstance(result, LaunchError):
                self.metrics.record(LAUNCH_FAILURES, agent)
                self.tasks.move(record, t.STOPPED, fields={"stop_reason": f"launch failed: {result}"[:500]})
                continue
            self.tasks.set_launched(record, runtime_ref=result.runtime_ref, capacity=result.capacity)
            started += 1
        if started:
            self.metrics.record(TASKS_LAUNCHED, agent, started)
            log.info("launched %d %s task(s)", started, agent)
        return started

    def _still_queued(self, job: Queued) -> bool:
        """Whether the job still waits for a task (a consistent read: the queue was read from
        an index, before the tasks)."""
        reply = self.client.get_item(
            TableName=self.table,
            Key={"dispatch_id": encode(job.dispatch_id)},
            ConsistentRead=True,
            ProjectionExpression="#s, #a",
            ExpressionAttributeNames={"#s": "status", "#a": "attempt"},
        )
        item = decode_item(reply["Item"]) if "Item" in reply else {}
        return item.get("status") == str(Status.PENDING) and int(item.get("attempt", 1)) == job.attempt

    def _scale_down(self, unclaimed: list[t.TaskRecord], excess: int) -> None:
        moment = now()
        idle_long = [
            task
            for task in unclaimed
            if (moment - parse_iso(task.created_at)).total_seconds() > self.idle_scale_down_s
        ]
        for task in idle_long[:excess]:
            # conditional on "unclaimed": a task that is claiming a job right now is left alone
            moved = self.tasks.move(task, t.STOPPING, fields={"stop_reason": "scaled down"})
            if moved is not None:
                stop(self.tasks, self.runtime, moved, "scaled down")
