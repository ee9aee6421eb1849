"""The status tracker: task-state events in, dispatch outcomes out.

Events (EventBridge "ECS Task State Change" → SQS, or the local runtime's events of the same
shape) arrive at least once and out of order. Within a batch they are ordered by
``detail.version`` per task and duplicates dropped (``order_events``); across batches and
replicas a conditional write of the newest applied version on the task record drops every
duplicate or stale event (``TaskStore.note_event_version``). Only a STOPPED event changes
anything; the others are dropped before any read.

A task that stopped while its dispatch is still running never reported: the dispatch fails,
or, when the stop was a Spot interruption, is requeued (attempt + 1, at most ``max_attempts``).
A dispatch whose cancel was requested (``DispatchRecord.cancel_requested``) ends CANCELLED.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from control_plane.engine import tasks as t
from control_plane.engine.outcomes import Outcomes
from control_plane.lifecycle import TERMINAL, Status
from control_plane.metrics import REASON_OOM, REASON_TASK_STOPPED, task_failed
from control_plane.runtime.ecs import task_env
from control_plane.store import Stores

log = logging.getLogger("outpost.tracker")
COMPONENT = "engine.tracker"


# -- pure functions -------------------------------------------------------------------------


def event_detail(body: str | dict[str, Any]) -> dict[str, Any] | None:
    """The ``detail`` of a task-state event (an SQS body), or None for anything else."""
    try:
        event = json.loads(body) if isinstance(body, str) else body
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("detail-type") != "ECS Task State Change":
        return None
    detail = event.get("detail")
    if not isinstance(detail, dict) or not detail.get("taskArn"):
        return None
    try:
        detail["version"] = int(detail.get("version", 0))
    except (TypeError, ValueError):
        return None
    return detail


def order_events(details: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task, by ``version`` ascending, each (task, version) once. Tasks keep the order in
    which they first appear, so one task's events never wait behind another's."""
    by_task: dict[str, dict[int, dict[str, Any]]] = {}
    for detail in details:
        by_task.setdefault(detail["taskArn"], {}).setdefault(detail["version"], detail)
    ordered: list[dict[str, Any]] = []
    for versions in by_task.values():
        ordered.extend(versions[v] for v in sorted(versions))
    return ordered


def newer_than(details: Iterable[dict[str, Any]], applied: dict[str, int]) -> list[dict[str, Any]]:
    """The events not yet applied, given the newest applied version per task."""
    return [d for d in order_events(details) if d["version"] > applied.get(d["taskArn"], 0)]


def is_spot_interruption(detail: dict[str, Any]) -> bool:
    reason = str(detail.get("stoppedReason") or "").lower()
    return detail.get("stopCode") == "SpotInterruption" or "spot" in reason and "interrupt" in reason


def exit_code_of(detail: dict[str, Any]) -> int | None:
    for container in detail.get("containers") or []:
        if container.get("exitCode") is not None:
            return int(container["exitCode"])
    return None


def is_out_of_memory(detail: dict[str, Any]) -> bool:
    """ECS names an out-of-memory kill in the container's reason ("OutOfMemoryError: Container
    killed due to memory usage"); the task's stoppedReason may carry it too."""
    reasons = [detail.get("stoppedReason")] + [c.get("reason") for c in detail.get("containers") or []]
    return any("outofmemory" in str(reason or "").lower() for reason in reasons)


def stopped_abnormally(detail: dict[str, Any]) -> bool:
    """A stop Outpost did not ask for that is a fault: the task never started, or its container
    exited non-zero or without an exit code (killed). Spot interruptions are AWS reclaiming
    capacity, not a fault of the task (they are counted as requeues)."""
    if is_spot_interruption(detail):
        return False
    return detail.get("stopCode") == "TaskFailedToStart" or exit_code_of(detail) != 0


# -- the tracker ----------------------------------------------------------------------------


@dataclass
class Tracker:
    stores: Stores
    tasks: t.TaskStore
    outcomes: Outcomes
    container_name: str = "agent"

    def handle_batch(self, details: Iterable[dict[str, Any]]) -> int:
        applied = 0
        for detail in order_events(details):
            try:
                applied += self.handle(detail)
            except Exception:
                log.exception("task event for %s not applied", detail.get("taskArn"))
                raise
        return applied

    def handle(self, detail: dict[str, Any]) -> bool:
        """Apply one event; False when it changes nothing (not a stop), is unknown, a duplicate
        or stale."""
        if detail.get("lastStatus") != "STOPPED":
            # Only a stop moves a task or its dispatch; ECS reports each of a task's states
            # (PROVISIONING, PENDING, ACTIVATING, RUNNING, DEACTIVATING, STOPPING, ...), and
            # reading the task and recording each version cost three DynamoDB calls apiece.
            return False
        # The task id from the launch's overrides takes one read where the reference's index
        # item takes two; it is trusted only for the task launched under this ARN, so that
        # another task's overrides can never stop this one.
        task_id = task_env(detail, self.container_name).get("OUTPOST_TASK_ID")
        named = self.tasks.get(task_id) if task_id else None
        task = named if named is not None and named.runtime_ref == detail["taskArn"] else None
        if task is None:
            task = self.tasks.by_ref(detail["taskArn"])
        if task is None:
            task = named  # launched, and not yet recorded under its ARN
        if task is None:
            return False  # not an Outpost task, or not recorded yet: the reconciler decides
        if not self.tasks.note_event_version(task, detail["version"]):
            return False
        if detail.get("lastStatus") == "STOPPED":
            self.task_stopped(task, detail)
        return True

    def task_stopped(self, task: t.TaskRecord, detail: dict[str, Any]) -> None:
        reason = str(detail.get("stoppedReason") or "the task stopped")
        for _ in range(5):
            if task.state == t.STOPPED:
                break
            moved = self.tasks.move(
                task, t.STOPPED, expect=t.LIVE_STATES, fields={"stop_reason": reason[:500]}
            )
            if moved is not None:
                if task.state != t.STOPPING and stopped_abnormally(detail):  # not stopped by Outpost
                    task_failed(task.agent)
                break
            fresh = self.tasks.get(task.task_id)
            if fresh is None:
                return
            task = fresh
        if task.job:
            self.fail_or_requeue(
                task.task_id,
                task.job,
                reason=reason,
                spot=is_spot_interruption(detail),
                exit_code=exit_code_of(detail),
                failure=REASON_OOM if is_out_of_memory(detail) else REASON_TASK_STOPPED,
            )

    def fail_or_requeue(
        self,
        task_id: str,
        dispatch_id: str,
        *,
        reason: str,
        spot: bool,
        exit_code: int | None = None,
        failure: str = REASON_TASK_STOPPED,
        component: str = COMPONENT,
    ) -> None:
        record = self.stores.dispatches.get(dispatch_id=dispatch_id, tenant_id=None)
        if record is None or record.status in TERMINAL or record.task_id != task_id:
            return  # reported, cancelled, or requeued to another task already
        if record.status is Status.PENDING:
            return
        if record.cancel_requested:
            # a cancel stopped it and its canceller died before writing CANCELLED: finish its work
            self.outcomes.finish(record, Status.CANCELLED, component=component, expect_task=task_id)
            return
        if spot:
            self.outcomes.requeue_or_fail(
                record, reason=f"Spot interruption: {reason}", component=component, expect_task=task_id
            )
            return
        changes: dict[str, Any] = {"error": f"the task stopped without reporting a result: {reason}"}
        if exit_code is not None:
            changes["exit_code"] = exit_code
        self.outcomes.finish(
            record, Status.FAILED, component=component, changes=changes, expect_task=task_id, failure=failure
        )
