"""The claim's timeouts with their production values: the long poll, the SQS client under it,
the deadline the control plane promises the runner, and the runner's own timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agents.runner import protocol
from agents.runner.timing import SQS_MAX_WAIT_S
from control_plane.aws import make_clients
from control_plane.engine import tasks as t
from control_plane.engine.config import EngineSettings
from control_plane.lifecycle import Status
from tests.control_plane.helpers import serving
from tests.engine.conftest import World, make_world

PRODUCTION_POLL_S = EngineSettings.model_fields["claim_long_poll_s"].default


@pytest.fixture
def production_world(moto_endpoint: str, tmp_path) -> Iterator[World]:
    """An engine with the production claim settings (the 20 s long poll)."""
    instance = make_world(moto_endpoint, tmp_path, claim_long_poll_s=PRODUCTION_POLL_S)
    try:
        yield instance
    finally:
        instance.runtime.close(stop_tasks=True, timeout_s=5)


@pytest.fixture
def served_url(production_world: World) -> Iterator[str]:
    app = production_world.client.app
    with serving(app) as (host, port):
        yield f"http://{host}:{port}"


def test_a_production_long_poll_on_an_empty_queue_answers_204_before_the_runner_gives_up(
    production_world: World, served_url: str
):
    """The one slow test here: a real 20 s long poll against the emulator's SQS, over HTTP,
    with the control plane's real clients and the runner's real protocol code."""
    assert PRODUCTION_POLL_S == 20
    task, token = production_world.new_task()
    control_plane = protocol.ControlPlane(served_url)
    started = time.monotonic()
    assert control_plane.claim(token, task.task_id) is None  # 204: no job, call again
    elapsed = time.monotonic() - started
    assert PRODUCTION_POLL_S - 1 <= elapsed < protocol.CLAIM_TIMEOUT_S
    # the token is still good, and the next claim gets the job at once
    record = production_world.dispatch()
    job = control_plane.claim(token, task.task_id)
    assert job is not None and job.dispatch_id == record.dispatch_id
    assert production_world.get(record.dispatch_id).status is Status.RUNNING


def test_claim_timeouts_nest_from_the_sqs_client_to_the_runner(production_world: World):
    settings = EngineSettings()
    claims = production_world.engine.claims
    assert claims.long_poll_s == settings.claim_long_poll_s == PRODUCTION_POLL_S
    # SQS refuses a longer wait, so the engine does too
    assert settings.claim_long_poll_s <= SQS_MAX_WAIT_S
    with pytest.raises(ValueError):
        EngineSettings(claim_long_poll_s=SQS_MAX_WAIT_S + 1)
    # the client that long-polls waits longer than the longest poll: an empty poll is no timeout
    sqs = make_clients(production_world.settings).sqs
    assert sqs.meta.config.read_timeout > SQS_MAX_WAIT_S
    assert production_world.clients.sqs.meta.config.read_timeout > SQS_MAX_WAIT_S
    # the runner waits longer than the deadline the control plane commits a claim by
    assert claims.long_poll_s < claims.commit_deadline_s
    assert protocol.CLAIM_TIMEOUT_S >= claims.commit_deadline_s + 5
    # a claim's reservation is taken for abandoned only after each of its writes gave up
    ddb = production_world.clients.dynamodb.meta.config
    one_write_s = ddb.retries["total_max_attempts"] * (ddb.connect_timeout + ddb.read_timeout)
    assert claims.reservation_stale_s > 2 * one_write_s


class LateReceive:
    """The engine's clock, moved past the claim's commit deadline when a ReceiveMessage
    answers: a poll that came back after its runner gave up."""

    def __init__(self, world: World) -> None:
        self.offset = 0.0
        self.world = world

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def receive_answered(self, **_: Any) -> None:
        self.offset += self.world.engine.claims.commit_deadline_s + 1


def test_a_poll_that_answers_after_the_commit_deadline_never_starts_the_job(world: World):
    record = world.dispatch()
    task, token = world.new_task()
    late = LateReceive(world)
    world.engine.claims.clock = late
    events = world.clients.sqs.meta.events
    events.register("after-call.sqs.ReceiveMessage", late.receive_answered)
    try:
        assert world.claim(token, task.task_id).status_code == 204
    finally:
        events.unregister("after-call.sqs.ReceiveMessage", late.receive_answered)
        world.engine.claims.clock = time.monotonic
    assert world.get(record.dispatch_id).status is Status.PENDING
    assert world.tasks.get(task.task_id).state == t.UNCLAIMED
    # the message was released at once, not left invisible, and the token still claims it
    reply = world.claim(token, task.task_id)
    assert reply.status_code == 200 and reply.json()["dispatch_id"] == record.dispatch_id


def test_a_claim_whose_answer_was_lost_is_resumed_by_the_retry(world: World):
    record = world.dispatch()
    task, token = world.new_task()
    lost = world.engine.claims.claim(token, task.task_id)  # committed; the runner never saw it
    assert lost is not None and world.get(record.dispatch_id).status is Status.RUNNING
    retry = world.claim(token, task.task_id)
    assert retry.status_code == 200, retry.text
    job = retry.json()
    assert (job["dispatch_id"], job["attempt"]) == (record.dispatch_id, 1)
    assert job["job_token"] != lost["job_token"]
    logs = f"/internal/dispatches/{record.dispatch_id}/logs"
    assert (
        world.client.post(logs, json={"lines": ["x"]}, headers=_bearer(lost["job_token"])).status_code == 401
    )
    assert (
        world.client.post(logs, json={"lines": ["x"]}, headers=_bearer(job["job_token"])).status_code == 202
    )
    # once the runner has used its job token, the claim token is spent for good
    assert world.claim(token, task.task_id).status_code == 401
    assert world.get(record.dispatch_id).task_id == task.task_id


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_retry_during_a_slow_commit_waits_for_it_and_then_resumes_the_claim(world: World):
    """The runner gave up while its claim was still writing (a slow DynamoDB call): the retry
    must neither undo that claim's reservation nor lose the job it is starting."""
    record = world.dispatch()
    task, token = world.new_task()
    in_commit, may_finish = threading.Event(), threading.Event()

    def slow_transition(params: dict[str, Any], **_: Any) -> None:
        # the transition to RUNNING: one transaction with its audit entry
        updates = [item["Update"] for item in params.get("TransactItems", []) if "Update" in item]
        if any(u["Key"].get("dispatch_id", {}).get("S") == record.dispatch_id for u in updates):
            in_commit.set()
            assert may_finish.wait(30)

    events = world.clients.dynamodb.meta.events
    events.register("before-parameter-build.dynamodb.TransactWriteItems", slow_transition)
    original: list[Any] = []
    first = threading.Thread(target=lambda: original.append(world.claim(token, task.task_id)))
    first.start()
    try:
        assert in_commit.wait(30)
        retry = world.claim(token, task.task_id)  # the runner stopped waiting and asks again
        assert retry.status_code == 204, retry.text  # in progress: call again
        assert world.tasks.get(task.task_id).state == t.CLAIMING
    finally:
        may_finish.set()
        first.join(30)
        events.unregister("before-parameter-build.dynamodb.TransactWriteItems", slow_transition)
    assert original and original[0].status_code == 200  # answered to nobody: the runner left
    resumed = world.claim(token, task.task_id)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["dispatch_id"] == record.dispatch_id
    started = world.get(record.dispatch_id)
    assert started.status is Status.RUNNING and started.task_id == task.task_id


def test_a_reservation_left_by_a_crashed_claim_is_undone_and_the_job_claimed(world: World):
    record = world.dispatch()
    task, token = world.new_task()
    # a claim reserved the task, then its process died before starting the job
    assert world.tasks.move(task, t.CLAIMING, fields={"job": record.dispatch_id, "job_attempt": 1})
    world.engine.claims.reservation_stale_s = 0.0  # its age is past the limit (see the relation test)
    reply = world.claim(token, task.task_id)
    assert reply.status_code == 200, reply.text
    assert reply.json()["dispatch_id"] == record.dispatch_id
    assert world.get(record.dispatch_id).task_id == task.task_id


def test_a_request_that_loses_the_claim_to_its_own_retry_answers_204_not_401(world: World):
    """Two requests of one runner overlap (it stopped waiting for the first): whichever loses
    the reservation must not answer 401, which would make the runner exit with a job started."""
    jobs = [world.dispatch(), world.dispatch()]
    task, token = world.new_task()
    received, go_on = threading.Event(), threading.Event()
    receives: list[int] = []

    def hold_the_first(**_: Any) -> None:
        receives.append(1)
        if len(receives) == 1:
            received.set()
            assert go_on.wait(30)

    events = world.clients.sqs.meta.events
    events.register("after-call.sqs.ReceiveMessage", hold_the_first)
    earlier: list[Any] = []
    first = threading.Thread(target=lambda: earlier.append(world.claim(token, task.task_id)))
    first.start()
    try:
        assert received.wait(30)  # the first request holds a message
        retry = world.claim(token, task.task_id)
    finally:
        go_on.set()
        first.join(30)
        events.unregister("after-call.sqs.ReceiveMessage", hold_the_first)
    assert retry.status_code == 200, retry.text
    assert earlier and earlier[0].status_code == 204, earlier[0].text
    statuses = [world.get(job.dispatch_id).status for job in jobs]
    assert sorted(statuses) == sorted([Status.RUNNING, Status.PENDING])
