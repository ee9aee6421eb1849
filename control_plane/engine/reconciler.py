"""The reconciler: a periodic pass that catches whatever events and crashes missed.

- dispatches left PENDING by a crash between the record write and the enqueue: enqueued again
  (a duplicate message is harmless: claims are conditional writes);
- dispatches nobody claimed for ``max_pending_s``: FAILED;
- RUNNING dispatches past their timeout (plus grace): TIMED_OUT and their task stopped;
- RUNNING dispatches whose task is gone (stopped, or unknown to the runtime): FAILED;
- tasks serving a dispatch that already ended (cancelled, timed out): stopped;
- orphan tasks (running in the runtime, unknown or finished for Outpost): stopped;
- task records the runtime never started or lost: marked stopped (the scaler replaces them);
- dispatch messages the queues dead-lettered: their PENDING dispatches FAILED (deadletters.py).

So no dispatch stays non-terminal forever. It runs under ``lease#reconciler``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from control_plane.engine import tasks as t
from control_plane.engine.control import stop
from control_plane.engine.deadletters import DeadLetters
from control_plane.engine.outcomes import RECONCILER, Outcomes
from control_plane.engine.tracker import Tracker
from control_plane.lifecycle import TERMINAL, Status
from control_plane.metrics import REASON_NOT_STARTED, REASON_TASK_LOST, task_failed
from control_plane.queueing import enqueue_dispatch
from control_plane.runtime.base import RuntimeTask
from control_plane.store import DispatchRecord, Stores
from control_plane.store.codec import decode_item, encode, iso, now, parse_iso

log = logging.getLogger("outpost.reconciler")
COMPONENT = RECONCILER


def dispatches_in(
    client: Any, table: str, status: Status, created_before: datetime | None = None
) -> list[DispatchRecord]:
    """Every dispatch in `status` (oldest first), or only those created before a moment."""
    kwargs: dict[str, Any] = {
        "TableName": table,
        "IndexName": "by-status",
        "KeyConditionExpression": "#s = :s",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":s": encode(str(status))},
    }
    if created_before is not None:
        kwargs["KeyConditionExpression"] += " AND created_at < :c"
        kwargs["ExpressionAttributeValues"][":c"] = encode(iso(created_before))
    records: list[DispatchRecord] = []
    while True:
        reply = client.query(**kwargs)
        records.extend(DispatchRecord.from_item(decode_item(i)) for i in reply.get("Items", []))
        if "LastEvaluatedKey" not in reply:
            return records
        kwargs["ExclusiveStartKey"] = reply["LastEvaluatedKey"]


@dataclass
class Reconciler:
    client: Any
    table: str
    stores: Stores
    tasks: t.TaskStore
    runtime: Any
    lease: t.Lease
    outcomes: Outcomes
    tracker: Tracker
    sqs: Any
    queue_urls: Mapping[str, str]
    agents: list[str]
    timeout_grace_s: float = 60.0
    launch_grace_s: float = 120.0
    max_pending_s: float = 6 * 3600.0
    enqueue_after_s: float = 30.0
    exit_grace_s: float = 30.0  # a task whose job ended is stopped if it has not exited by then
    dead_letters: DeadLetters | None = None
    # the runtime's live tasks, listed once per pass and shared by the steps that read them
    _listed: list[RuntimeTask] | None = field(default=None, init=False, repr=False)

    def tick(self) -> dict[str, int] | None:
        if not self.lease.acquire():
            return None
        self._listed = None
        counts = {
            "enqueued": 0,
            "expired": 0,
            "timed_out": 0,
            "vanished": 0,
            "stopped": 0,
            "orphans": 0,
            "dead_lettered": 0,
        }
        for step in (self._enqueue, self._expire_pending, self._running, self._tasks, self._dead_letters):
            try:
                step(counts)
            except Exception:
                log.exception("reconciler step %s failed", step.__name__)
        return counts

    def _runtime_tasks(self) -> list[RuntimeTask]:
        if self._listed is None:
            self._listed = [task for task in self.runtime.list_tasks() if task.live]
        return self._listed

    def _enqueue(self, counts: dict[str, int]) -> None:
        for record in self.stores.dispatches.unenqueued(older_than_s=self.enqueue_after_s):
            if enqueue_dispatch(
                record, sqs=self.sqs, queue_urls=self.queue_urls, store=self.stores.dispatches
            ):
                counts["enqueued"] += 1

    def _dead_letters(self, counts: dict[str, int]) -> None:
        if self.dead_letters is not None:
            counts["dead_lettered"] += self.dead_letters.drain()

    def _expire_pending(self, counts: dict[str, int]) -> None:
        moment = now()
        # one that waited long since its last change was created at least as long ago: the
        # backlog of recent dispatches is not read at all
        created_before = moment - timedelta(seconds=self.max_pending_s)
        for record in dispatches_in(self.client, self.table, Status.PENDING, created_before):
            waited = (moment - parse_iso(record.updated_at)).total_seconds()
            if waited > self.max_pending_s:
                error = f"no task started the job within {self.max_pending_s:g} s"
                if self.outcomes.finish(
                    record,
                    Status.FAILED,
                    component=COMPONENT,
                    changes={"error": error},
                    failure=REASON_NOT_STARTED,
                ):
                    counts["expired"] += 1

    def _running(self, counts: dict[str, int]) -> None:
        moment = now()
        live_refs = {task.runtime_ref for task in self._runtime_tasks()}
        for record in dispatches_in(self.client, self.table, Status.RUNNING):
            started = record.timestamps.get(str(Status.RUNNING)) or record.updated_at
            ran = (moment - parse_iso(started)).total_seconds()
            task = self.tasks.get(record.task_id) if record.task_id else None
            if ran > record.timeout_s + self.timeout_grace_s:
                ended = self.outcomes.finish(
                    record,
                    Status.TIMED_OUT,
                    component=COMPONENT,
                    changes={"error": f"the job ran over its timeout of {record.timeout_s} s"},
                    expect_task=record.task_id,
                )
                if ended is not None:
                    counts["timed_out"] += 1
                if task is not None:
                    stop(self.tasks, self.runtime, task, "timed out")
                continue
            gone = task is None or task.state == t.STOPPED
            if task is not None and not gone and task.runtime_ref not in live_refs:
                # only trust the runtime's listing once the task had time to show up in it
                claimed = parse_iso(task.claimed_at) if task.claimed_at else parse_iso(task.created_at)
                gone = (moment - claimed).total_seconds() > self.launch_grace_s
            if gone:
                self.tracker.fail_or_requeue(
                    record.task_id or "",
                    record.dispatch_id,
                    reason=(task.stop_reason if task and task.stop_reason else "the task is gone"),
                    spot=False,
                    failure=REASON_TASK_LOST,
                    component=COMPONENT,
                )
                if task is not None and task.state != t.STOPPED:
                    moved = self.tasks.move(task, t.STOPPED, expect=t.LIVE_STATES)
                    if moved is not None and task.state != t.STOPPING:  # lost, not stopped by Outpost
                        task_failed(task.agent)
                counts["vanished"] += 1

    def _tasks(self, counts: dict[str, int]) -> None:
        moment = now()
        runtime_tasks = self._runtime_tasks()
        live_refs = {task.runtime_ref for task in runtime_tasks}
        records = self.tasks.live(self.agents)
        known_refs = {task.runtime_ref for task in records if task.runtime_ref}
        for task in records:
            age = (moment - parse_iso(task.created_at)).total_seconds()
            if task.runtime_ref not in live_refs:
                if age > self.launch_grace_s:
                    # never started, or gone without an event reaching us
                    if self.tasks.move(task, t.STOPPED, expect=t.LIVE_STATES, fields={"stop_reason": "lost"}):
                        counts["stopped"] += 1
                        if task.state != t.STOPPING:  # lost, not stopped by Outpost
                            task_failed(task.agent)
                    if task.job:
                        self.tracker.fail_or_requeue(
                            task.task_id,
                            task.job,
                            reason="the task is gone",
                            spot=False,
                            failure=REASON_TASK_LOST,
                            component=COMPONENT,
                        )
                continue
            if task.state == t.CLAIMED and task.job:
                record = self.stores.dispatches.get(dispatch_id=task.job, tenant_id=None)
                ended_long_ago = (
                    record is None
                    or (moment - parse_iso(record.updated_at)).total_seconds() > self.exit_grace_s
                )
                if ended_long_ago and (
                    record is None or record.status in TERMINAL or record.task_id != task.task_id
                ):
                    # a runner exits by itself right after its report; this is the safety net
                    status = record.status if record else "missing"
                    stop(self.tasks, self.runtime, task, f"its dispatch is {status}")
                    counts["stopped"] += 1
            elif task.state == t.STOPPING:
                stop(self.tasks, self.runtime, task, task.stop_reason or "stopping")
        for orphan in runtime_tasks:
            if orphan.runtime_ref not in known_refs:
                recorded = self.tasks.by_ref(orphan.runtime_ref)
                if recorded is None and orphan.task_id:  # launched a moment ago, ARN not noted yet
                    recorded = self.tasks.get(orphan.task_id)
                if recorded is not None and recorded.live:
                    continue  # recorded a moment ago
                log.warning("stopping orphan task %s", orphan.runtime_ref)
                self.runtime.stop(orphan.runtime_ref, "Outpost: orphan task")
                counts["orphans"] += 1
