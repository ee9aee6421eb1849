"""Dispatch messages the queues gave up on: read from the dead-letter queue, never left to rot.

A dispatch queue moves a message to the DLQ after maxReceiveCount (5) receives that neither
deleted it nor gave it back (`queueing.release` sends a fresh copy, so benign give-backs never
count): five claims that died or were abandoned after receiving it. Nothing would receive it
again, so its dispatch would wait PENDING until ``max_pending_s`` while the scaler kept
launching tasks for it. One step of each reconciler pass reads the DLQ:

- the message of a dispatch still PENDING on the same attempt: the dispatch becomes FAILED,
  saying that its message was dead-lettered (five broken claims are a fault to look at, not
  something to retry forever), and the message is deleted;
- a message whose dispatch is missing, ended, started, or requeued as a later attempt (which
  sent its own message): deleted, nothing else to do;
- anything else (the task-events queue shares this DLQ): left for inspection (the DLQ keeps
  messages 14 days), out of the next passes' way for ``hold_s``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from control_plane import metrics
from control_plane.lifecycle import IllegalTransitionError, Status
from control_plane.store import Actor, Stores, VersionConflictError

log = logging.getLogger("outpost.deadletters")
COMPONENT = "engine.deadletters"


def dispatch_of(body: str) -> tuple[str, int] | None:
    """(dispatch id, attempt) of a dispatch message (queueing.queue_message), else None."""
    try:
        message = json.loads(body)
        return str(message["dispatch_id"]), int(message.get("attempt", 1))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


@dataclass
class DeadLetters:
    sqs: Any
    queue_url: str
    stores: Stores
    max_batches: int = 10  # at most 100 messages a pass; the rest wait for the next one
    hold_s: int = 300

    def drain(self) -> int:
        """Handle what the DLQ holds now; returns the number of dispatches failed."""
        failed = 0
        for _ in range(self.max_batches):
            reply = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                VisibilityTimeout=self.hold_s,
                AttributeNames=["ApproximateReceiveCount"],
            )
            messages = reply.get("Messages", [])
            for message in messages:
                failed += self._handle(message)
            if not messages:
                break
        return failed

    def _handle(self, message: dict[str, Any]) -> int:
        target = dispatch_of(message["Body"])
        if target is None:
            return 0  # not a dispatch message: left for inspection
        dispatch_id, attempt = target
        record = self.stores.dispatches.get(dispatch_id=dispatch_id, tenant_id=None)
        failed = 0
        if record is not None and record.status is Status.PENDING and record.attempt == attempt:
            # the receives on the source queue, less this one from the DLQ (SQS carries the count
            # over; should a queue ever restart it, the reason still holds without a number)
            receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)) - 1
            count = f"{receives} receives" if receives > 0 else "its queue's receive limit"
            error = (
                f"its queue message was dead-lettered after {count} without the job starting "
                "(claims kept failing); dispatch it again"
            )
            try:
                self.stores.dispatches.transition(
                    dispatch_id=dispatch_id,
                    to=Status.FAILED,
                    actor=Actor.system(COMPONENT),
                    expected_version=record.version,
                    changes={"error": error},
                    current=record,
                )
            except (VersionConflictError, IllegalTransitionError):
                return 0  # it moved meanwhile: the next pass decides on its new state
            metrics.dispatch_dead_lettered(record.agent)
            log.warning("dispatch %s failed: %s", dispatch_id, error)
            failed = 1
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return failed
