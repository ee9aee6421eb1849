"""Ending or requeueing a dispatch on behalf of the engine (tracker, reconciler, result reports)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agents import error_kinds
from control_plane import metrics as m
from control_plane.engine.metrics import StartMetrics
from control_plane.lifecycle import TERMINAL, IllegalTransitionError, Status
from control_plane.metrics import DISPATCHES_REQUEUED
from control_plane.queueing import enqueue_dispatch
from control_plane.store import Actor, DispatchRecord, Stores, VersionConflictError

log = logging.getLogger("outpost.engine")
RECONCILER = "engine.reconciler"  # the component whose failures are counted apart
# Why a FAILED or TIMED_OUT end happened when the caller does not say: the runner's reports.
DEFAULT_FAILURE = {Status.FAILED: m.REASON_AGENT_ERROR, Status.TIMED_OUT: m.REASON_TIMEOUT}
# Why the runner's FAILED report failed, from the kind it reports (agents/error_kinds.py).
ERROR_KIND_REASONS = {
    error_kinds.API: m.REASON_API,
    error_kinds.NETWORK: m.REASON_NETWORK,
    error_kinds.AGENT: m.REASON_AGENT_ERROR,
}


def runner_failure(outcome: str, summary: Mapping[str, Any]) -> str | None:
    """The metrics reason of a runner's report; None: the status's default (DEFAULT_FAILURE).
    A runner that reports no kind (an older one) is counted as before, an agent error."""
    kind = summary.get("error_kind")
    return ERROR_KIND_REASONS.get(kind) if outcome == Status.FAILED.value and kind else None


@dataclass
class Outcomes:
    stores: Stores
    sqs: Any
    queue_urls: Mapping[str, str]
    max_attempts: int = 3
    metrics: StartMetrics | None = None
    # called once a dispatch ended: its run slot is free, so waiting work may be admitted now
    on_end: Callable[[], None] | None = None

    def finish(
        self,
        record: DispatchRecord,
        to: Status,
        *,
        component: str,
        changes: dict[str, Any] | None = None,
        expect_task: str | None = None,
        failure: str | None = None,
    ) -> DispatchRecord | None:
        """Move a non-terminal dispatch to a final status; None if it already ended or moved on
        to another task (the newest state wins; nothing is overwritten). ``failure``: why a
        FAILED or TIMED_OUT end happened (metrics.FAILURE_REASONS), counted once it is written."""
        for _ in range(5):
            if record.status in TERMINAL:
                return None
            if expect_task is not None and record.task_id != expect_task:
                return None
            try:
                ended = self.stores.dispatches.transition(
                    dispatch_id=record.dispatch_id,
                    to=to,
                    actor=Actor.system(component),
                    expected_version=record.version,
                    changes=changes,
                    current=record,
                )
            except (VersionConflictError, IllegalTransitionError):
                fresh = self.stores.dispatches.get(dispatch_id=record.dispatch_id, tenant_id=None)
                if fresh is None:
                    return None
                record = fresh
                continue
            if to in DEFAULT_FAILURE:
                m.dispatch_failed(
                    ended.agent, failure or DEFAULT_FAILURE[to], by_reconciler=component == RECONCILER
                )
            if self.on_end is not None:
                self.on_end()
            return ended
        return None

    def requeue_or_fail(
        self, record: DispatchRecord, *, reason: str, component: str, expect_task: str | None = None
    ) -> DispatchRecord | None:
        """Requeue (attempt + 1) while attempts remain, else fail with ``reason``."""
        if record.cancel_requested:  # never restart a job someone cancelled
            return self.finish(record, Status.CANCELLED, component=component, expect_task=expect_task)
        if record.attempt >= self.max_attempts:
            return self.finish(
                record,
                Status.FAILED,
                component=component,
                changes={"error": f"{reason}; gave up after {record.attempt} attempts"},
                expect_task=expect_task,
                failure=m.REASON_INTERRUPTED,
            )
        for _ in range(5):
            if record.status is not Status.RUNNING:
                return None
            if expect_task is not None and record.task_id != expect_task:
                return None
            try:
                requeued = self.stores.dispatches.transition(
                    dispatch_id=record.dispatch_id,
                    to=Status.PENDING,
                    actor=Actor.system(component),
                    expected_version=record.version,
                    current=record,
                )
            except (VersionConflictError, IllegalTransitionError):
                fresh = self.stores.dispatches.get(dispatch_id=record.dispatch_id, tenant_id=None)
                if fresh is None:
                    return None
                record = fresh
                continue
            log.info("requeued dispatch %s as attempt %s: %s", record.dispatch_id, requeued.attempt, reason)
            if self.metrics is not None:
                self.metrics.record(DISPATCHES_REQUEUED, record.agent)
            # if the send fails, the reconciler finds the record (enqueued=false) and retries
            enqueue_dispatch(requeued, sqs=self.sqs, queue_urls=self.queue_urls, store=self.stores.dispatches)
            return requeued
        return None
