"""Putting a dispatch on its agent's queue: one function for the API, the engine and the reconciler.

The record is written first (enqueued=false), then admitted (it takes one of its tenant's run
slots, `DispatchStore.admit`), then the message is sent, then the record is marked enqueued. A
dispatch whose tenant has no free slot stays PENDING without a message until the engine's
admission pass (control_plane.engine.admission) admits it. A crash or an SQS error after the
admission leaves enqueued=false, and the reconciler finds the record with
`DispatchStore.unenqueued` and calls this function again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from control_plane.store.dispatches import DispatchRecord, DispatchStore

log = logging.getLogger("outpost.queue")


def queue_message(record: DispatchRecord) -> dict[str, Any]:
    """The message body: just enough to find the record; the record stays the truth."""
    return {
        "dispatch_id": record.dispatch_id,
        "tenant_id": record.tenant_id,
        "agent": record.agent,
        "attempt": record.attempt,
    }


def enqueue_dispatch(
    record: DispatchRecord, *, sqs: Any, queue_urls: Mapping[str, str], store: DispatchStore
) -> bool:
    """Admit the dispatch, send its message and mark it enqueued; False when its tenant has no
    free run slot (it waits PENDING) or the send failed (logged)."""
    admitted = store.admit(record=record)
    if admitted is None:
        return False
    record = admitted
    try:
        sqs.send_message(
            QueueUrl=queue_urls[record.agent],
            MessageBody=json.dumps(queue_message(record)),
            MessageAttributes={"attempt": {"DataType": "Number", "StringValue": str(record.attempt)}},
        )
    except Exception:
        log.exception(
            "dispatch not enqueued; the reconciler will retry",
            extra={"dispatch_id": record.dispatch_id, "agent": record.agent},
        )
        return False
    store.mark_enqueued(dispatch_id=record.dispatch_id, attempt=record.attempt)
    return True


def release(message: Mapping[str, Any], *, sqs: Any, queue_url: str) -> None:
    """Give a received dispatch message back to its queue, for the next claim.

    Not ChangeMessageVisibility to 0: SQS counts every receive, and after the queue's
    maxReceiveCount (5, constructs/work_queue.py) a message given back for benign reasons (a
    lost race between claims, a claim past its deadline) would be dead-lettered and its
    dispatch never started. A fresh copy starts with no receives. It is sent before the old one
    is deleted, so a failure between the two leaves a duplicate (harmless: a claim is a
    conditional write), never no message.
    """
    attributes: dict[str, Any] = {}
    try:
        attempt = int(json.loads(message["Body"])["attempt"])
        attributes["attempt"] = {"DataType": "Number", "StringValue": str(attempt)}
    except (ValueError, KeyError, TypeError):
        pass  # not a message enqueue_dispatch wrote: given back as it came
    extra = {"MessageAttributes": attributes} if attributes else {}
    sqs.send_message(QueueUrl=queue_url, MessageBody=message["Body"], **extra)
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
