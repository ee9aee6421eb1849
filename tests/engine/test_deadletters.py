"""Dead-lettered dispatch messages: a benign give-back never dead-letters a message, and what
the queues do dead-letter is recovered by the reconciler (moto's SQS applies the redrive policy)."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest

from control_plane.engine.deadletters import DeadLetters
from control_plane.lifecycle import Status
from control_plane.queueing import release
from control_plane.store import Actor, VersionConflictError
from tests.engine.conftest import World

# constructs/work_queue.py's default, which the data stack uses for every dispatch queue
MAX_RECEIVES = 5


def queue_size(world: World, url: str) -> int:
    attrs = world.clients.sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_local_queues_dead_letter_after_as_many_receives_as_the_deployed_ones(world: World) -> None:
    from constructs.work_queue import WorkQueue

    deployed = inspect.signature(WorkQueue.__init__).parameters["max_receive_count"].default
    policy = world.clients.sqs.get_queue_attributes(
        QueueUrl=world.settings.dispatch_queue_urls["shell"], AttributeNames=["RedrivePolicy"]
    )["Attributes"]["RedrivePolicy"]
    assert int(json.loads(policy)["maxReceiveCount"]) == deployed == MAX_RECEIVES


@pytest.mark.parametrize("body", [json.dumps({"dispatch_id": "d-1", "attempt": 2}), "not json"])
def test_release_gives_a_message_back_without_spending_its_receives(world: World, body: str) -> None:
    sqs, url = world.clients.sqs, world.settings.dispatch_queue_urls["shell"]
    sqs.send_message(QueueUrl=url, MessageBody=body)
    for _ in range(3 * MAX_RECEIVES):
        [message] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, VisibilityTimeout=30)["Messages"]
        assert message["Body"] == body
        release(message, sqs=sqs, queue_url=url)
    assert queue_size(world, url) == 1
    assert queue_size(world, world.settings.dead_letter_queue_url or "") == 0


def test_a_message_given_back_more_often_than_the_receive_limit_is_never_dead_lettered(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = world.dispatch()
    store = world.stores.dispatches
    real_transition = store.transition
    conflicts = 3 * MAX_RECEIVES

    def transition(**kwargs: Any) -> Any:
        """A benign race, injected: someone else changed the dispatch first (it stays PENDING)."""
        nonlocal conflicts
        if Status(kwargs["to"]) is Status.RUNNING and conflicts > 0:
            conflicts -= 1
            raise VersionConflictError("dispatch", kwargs["dispatch_id"], kwargs.get("expected_version") or 0)
        return real_transition(**kwargs)

    monkeypatch.setattr(store, "transition", transition)
    task, token = world.new_task()
    started = None
    for _ in range(10 * MAX_RECEIVES):  # each claim gives the message back after a conflict
        if conflicts == 0 or started is not None:
            break
        reply = world.claim(token, task.task_id)
        if reply.status_code == 200:
            started = reply.json()["dispatch_id"]
    assert conflicts == 0
    assert queue_size(world, world.settings.dead_letter_queue_url or "") == 0
    if started is None:  # the conflicts ran out between two claims: the next one starts the job
        task, token = world.new_task()
        reply = world.claim(token, task.task_id)
        assert reply.status_code == 200, reply.text
        started = reply.json()["dispatch_id"]
    assert started == record.dispatch_id
    assert world.get(record.dispatch_id).status is Status.RUNNING


def test_a_dispatch_whose_message_dead_lettered_fails_with_the_reason(world: World) -> None:
    record = world.dispatch()
    sqs, url = world.clients.sqs, world.settings.dispatch_queue_urls["shell"]
    for _ in range(MAX_RECEIVES):  # five claims that received the job and died
        assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, VisibilityTimeout=0).get("Messages")
    assert not sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages")  # moved to the DLQ
    assert world.get(record.dispatch_id).status is Status.PENDING

    counts = world.engine.reconciler.tick()

    assert counts is not None and counts["dead_lettered"] == 1
    failed = world.get(record.dispatch_id)
    assert failed.status is Status.FAILED
    assert f"dead-lettered after {MAX_RECEIVES} receives" in (failed.error or "")
    assert queue_size(world, world.settings.dead_letter_queue_url or "") == 0


def test_dead_letters_of_ended_or_requeued_dispatches_are_dropped_and_others_kept(world: World) -> None:
    sqs, dlq = world.clients.sqs, world.settings.dead_letter_queue_url or ""
    cancelled = world.dispatch()
    world.stores.dispatches.transition(
        dispatch_id=cancelled.dispatch_id, to=Status.CANCELLED, actor=Actor.system("test")
    )
    waiting = world.dispatch()
    bodies = [
        {"dispatch_id": cancelled.dispatch_id, "attempt": 1},  # ended
        {"dispatch_id": "d-missing", "attempt": 1},  # gone
        {"dispatch_id": waiting.dispatch_id, "attempt": 0},  # an older attempt's message
    ]
    for body in bodies:
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(body))
    event = {"detail-type": "ECS Task State Change", "detail": {"taskArn": "arn:x", "version": 1}}
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(event))  # the task-events queue's DLQ too

    failed = DeadLetters(sqs=sqs, queue_url=dlq, stores=world.stores, hold_s=0).drain()

    assert failed == 0
    assert world.get(cancelled.dispatch_id).status is Status.CANCELLED
    assert world.get(waiting.dispatch_id).status is Status.PENDING
    [kept] = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=0)["Messages"]
    assert json.loads(kept["Body"]) == event
