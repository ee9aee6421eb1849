"""The status tracker (ordering, duplicates, stops, Spot requeues) and the reconciler."""

from __future__ import annotations

import json
import os
import signal
import time

from hypothesis import given
from hypothesis import strategies as st

from control_plane.aws_calls import AwsCallCounter
from control_plane.engine import tasks as t
from control_plane.engine.tracker import event_detail, is_spot_interruption, newer_than, order_events
from control_plane.lifecycle import Status
from control_plane.runtime.base import LaunchRequest, client_token
from control_plane.runtime.local import task_state_event
from control_plane.store import Actor, DispatchRecord
from control_plane.store.dispatches import new_dispatch_id
from tests.engine.conftest import World, make_world


def detail(arn: str, version: int, status: str = "RUNNING", **extra) -> dict:
    return {"taskArn": arn, "version": version, "lastStatus": status, **extra}


# -- pure functions ------------------------------------------------------------------------


@given(
    st.lists(
        st.tuples(st.sampled_from(["arn:a", "arn:b", "arn:c"]), st.integers(min_value=1, max_value=8)),
        max_size=40,
    ),
    st.randoms(),
)
def test_events_are_ordered_by_version_per_task_and_deduplicated(pairs, rnd):
    events = [detail(arn, version) for arn, version in pairs]
    rnd.shuffle(events)
    ordered = order_events(events)
    for arn in {"arn:a", "arn:b", "arn:c"}:
        versions = [e["version"] for e in ordered if e["taskArn"] == arn]
        assert versions == sorted(set(v for a, v in pairs if a == arn))


def test_events_already_applied_are_dropped():
    events = [
        detail("arn:a", 3, "STOPPED"),
        detail("arn:a", 2),
        detail("arn:b", 1),
        detail("arn:a", 3, "STOPPED"),
    ]
    assert [(e["taskArn"], e["version"]) for e in newer_than(events, {"arn:a": 2})] == [
        ("arn:a", 3),
        ("arn:b", 1),
    ]


def test_event_bodies_other_than_task_state_changes_are_ignored():
    good = task_state_event(task_arn="arn:x", agent="shell", task_id="t-1", last_status="STOPPED", version=4)
    assert event_detail(json.dumps(good))["version"] == 4
    assert event_detail("not json") is None
    assert event_detail(json.dumps({"detail-type": "EC2 Instance State-change Notification"})) is None
    assert event_detail(json.dumps({**good, "detail": {"version": "x", "taskArn": "a"}})) is None


def test_spot_interruptions_are_recognised():
    assert is_spot_interruption({"stopCode": "SpotInterruption"})
    assert is_spot_interruption({"stoppedReason": "Your Spot Task was interrupted."})
    assert not is_spot_interruption({"stopCode": "EssentialContainerExited", "stoppedReason": "exit 1"})


# -- against the emulator ------------------------------------------------------------------


def running_job(world: World, **dispatch_kw) -> tuple[t.TaskRecord, str]:
    """A dispatch RUNNING on a recorded task (claimed through the internal endpoint)."""
    record = world.dispatch(**dispatch_kw)
    task, token = world.new_task()
    world.tasks.set_launched(
        task, runtime_ref=f"arn:aws:ecs:us-east-1:1:task/outpost/{task.task_id}", capacity="X"
    )
    assert world.claim(token, task.task_id).status_code == 200
    claimed = world.tasks.get(task.task_id)
    assert claimed is not None and claimed.state == t.CLAIMED
    return claimed, record.dispatch_id


def test_a_task_stopped_without_a_report_fails_its_dispatch_once(world: World):
    task, dispatch_id = running_job(world)
    arn = task.runtime_ref
    stopped = detail(
        arn, 5, "STOPPED", stoppedReason="Essential container in task exited", containers=[{"exitCode": 137}]
    )
    # out of order and duplicated: the stop applied once; a RUNNING event (3) changes nothing
    applied = world.engine.tracker.handle_batch([stopped, detail(arn, 3), stopped])
    assert applied == 1
    record = world.get(dispatch_id)
    assert record.status is Status.FAILED and record.exit_code == 137
    assert "without reporting" in record.error
    assert world.tasks.get(task.task_id).state == t.STOPPED
    assert (
        world.engine.tracker.handle_batch([detail(arn, 4), stopped]) == 0
    )  # later batches: stale, duplicate
    assert world.get(dispatch_id).version == record.version


def test_a_spot_interruption_requeues_until_the_attempts_run_out(world: World):
    task, dispatch_id = running_job(world)
    spot = {"stopCode": "SpotInterruption", "stoppedReason": "Your Spot Task was interrupted."}
    world.engine.tracker.handle_batch([detail(task.runtime_ref, 2, "STOPPED", **spot)])
    record = world.get(dispatch_id)
    assert (record.status, record.attempt, record.enqueued) == (Status.PENDING, 2, True)
    for _ in range(2):  # attempts 2 and 3 are interrupted too
        again, token = world.new_task()
        world.tasks.set_launched(again, runtime_ref=f"arn:{again.task_id}", capacity="X")
        assert world.claim(token, again.task_id).json()["dispatch_id"] == dispatch_id
        world.engine.tracker.handle_batch([detail(f"arn:{again.task_id}", 2, "STOPPED", **spot)])
    record = world.get(dispatch_id)
    assert record.status is Status.FAILED and record.attempt == 3
    assert "Spot interruption" in record.error


def test_a_stop_after_the_report_changes_nothing(world: World):
    task, dispatch_id = running_job(world)
    world.engine.outcomes.finish(
        world.get(dispatch_id), Status.COMPLETED, component="test", changes={"exit_code": 0}
    )
    world.engine.tracker.handle_batch([detail(task.runtime_ref, 2, "STOPPED", stoppedReason="exit 0")])
    assert world.get(dispatch_id).status is Status.COMPLETED
    assert world.tasks.get(task.task_id).state == t.STOPPED


def test_events_reach_the_tracker_through_the_task_events_queue(world: World):
    task, dispatch_id = running_job(world)
    event = task_state_event(
        task_arn=task.runtime_ref, agent="shell", task_id=task.task_id, last_status="STOPPED", version=9
    )
    for _ in range(2):  # at-least-once delivery
        world.engine.deliver_event(event)
    deadline = time.monotonic() + 10
    while world.get(dispatch_id).status is Status.RUNNING and time.monotonic() < deadline:
        world.engine.consume_events(wait_s=1)
    assert world.get(dispatch_id).status is Status.FAILED


# -- reconciler ----------------------------------------------------------------------------


def launched_job(world: World, **dispatch_kw) -> tuple[t.TaskRecord, str]:
    """A dispatch RUNNING on a real local task (a sleep process)."""
    record = world.dispatch(**dispatch_kw)
    task, token = world.new_task()
    [launched] = world.runtime.launch(
        [LaunchRequest(agent="shell", task_id=task.task_id, client_token=task.client_token, env={})]
    )
    world.tasks.set_launched(task, runtime_ref=launched.runtime_ref, capacity=launched.capacity)
    assert world.claim(token, task.task_id).status_code == 200
    return world.tasks.get(task.task_id), record.dispatch_id


def test_reconciler_times_out_a_job_over_its_timeout_and_stops_its_task(world: World):
    task, dispatch_id = launched_job(world, timeout_s=1)
    pid = world.runtime.pid_of(task.task_id)
    time.sleep(1.2)
    counts = world.engine.reconciler.tick()
    assert counts["timed_out"] == 1
    assert world.get(dispatch_id).status is Status.TIMED_OUT
    deadline = time.monotonic() + 10
    while world.runtime.pid_of(task.task_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert world.runtime.pid_of(task.task_id) is None
    assert (
        not os.path.exists(f"/proc/{pid}/cmdline")
        or open(f"/proc/{pid}/stat").read().split(") ")[1][0] in "ZX"
    )


def test_reconciler_fails_a_running_job_whose_task_vanished(world: World):
    task, dispatch_id = launched_job(world)
    world.runtime.event_sink = None  # the event is lost
    os.kill(world.runtime.pid_of(task.task_id), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while world.runtime.list_tasks() and time.monotonic() < deadline:
        time.sleep(0.05)
    world.tasks._client.update_item(  # claimed long enough ago to trust the runtime's listing
        TableName=world.settings.dispatches_table,
        Key={"dispatch_id": {"S": f"task#{task.task_id}"}},
        UpdateExpression="SET claimed_at = :c",
        ExpressionAttributeValues={":c": {"S": "2020-01-01T00:00:00.000000Z"}},
    )
    counts = world.engine.reconciler.tick()
    assert counts["vanished"] == 1
    record = world.get(dispatch_id)
    assert record.status is Status.FAILED and "without reporting" in record.error


def test_reconciler_stops_the_task_of_a_cancelled_job_and_orphans(world: World):
    world.engine.reconciler.exit_grace_s = 0.0  # the task did not exit on its own after the job ended
    task, dispatch_id = launched_job(world)
    record = world.get(dispatch_id)
    world.stores.dispatches.transition(
        dispatch_id=dispatch_id,
        to=Status.CANCELLED,
        actor=Actor.system("test"),
        expected_version=record.version,
    )
    [orphan] = world.runtime.launch(
        [LaunchRequest(agent="shell", task_id="t-orphan", client_token=client_token("orphan", 1), env={})]
    )
    counts = world.engine.reconciler.tick()
    assert counts["stopped"] >= 1 and counts["orphans"] == 1
    deadline = time.monotonic() + 10
    while world.runtime.list_tasks() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert world.runtime.list_tasks() == []


def _written_then_crashed(world) -> DispatchRecord:
    return world.stores.dispatches.create(  # written, then the process died before the send
        record=DispatchRecord(
            dispatch_id=new_dispatch_id(),
            tenant_id=world.tenant_id,
            agent="shell",
            task="x",
            timeout_s=60,
        ),
        actor=Actor.system("test"),
    )


def test_creation_admits_in_the_same_write_so_a_crash_leaves_nothing_unadmitted(moto_endpoint, tmp_path):
    world = make_world(moto_endpoint, tmp_path)
    try:
        record = _written_then_crashed(world)
        assert world.get(record.dispatch_id).admitted and not world.get(record.dispatch_id).enqueued
        assert world.engine.admission.tick() == 0  # the reconciler's to send (the test below)
    finally:
        world.runtime.close()


def test_admission_enqueues_a_dispatch_that_waited_for_a_run_slot(moto_endpoint, tmp_path):
    world = make_world(moto_endpoint, tmp_path)
    system = Actor.system("test")
    try:
        world.stores.tenants.update(tenant_id=world.tenant_id, fields={"max_running": 0}, actor=system)
        record = _written_then_crashed(world)
        assert not record.admitted
        assert world.engine.admission.tick() == 0  # still no slot
        world.stores.tenants.update(tenant_id=world.tenant_id, fields={"max_running": 50}, actor=system)
        assert world.engine.admission.tick() == 1
        assert world.get(record.dispatch_id).enqueued
        task, token = world.new_task()
        assert world.claim(token, task.task_id).json()["dispatch_id"] == record.dispatch_id
    finally:
        world.runtime.close()


def test_reconciler_enqueues_a_dispatch_admitted_but_left_unenqueued_by_a_crash(moto_endpoint, tmp_path):
    world = make_world(moto_endpoint, tmp_path)
    try:
        record = _written_then_crashed(world)
        assert world.stores.dispatches.admit(record=record) is not None  # then the process died
        world.engine.reconciler.enqueue_after_s = 0.0
        time.sleep(0.01)
        assert world.engine.reconciler.tick()["enqueued"] == 1
        assert world.get(record.dispatch_id).enqueued
        task, token = world.new_task()
        assert world.claim(token, task.task_id).json()["dispatch_id"] == record.dispatch_id
    finally:
        world.runtime.close()


def test_reconciler_fails_a_job_nobody_claimed_in_time(moto_endpoint, tmp_path):
    world = make_world(moto_endpoint, tmp_path, max_pending_s=0.5)
    try:
        record = world.dispatch()
        time.sleep(0.6)
        assert world.engine.reconciler.tick()["expired"] == 1
        assert world.get(record.dispatch_id).status is Status.FAILED
    finally:
        world.runtime.close()


def test_only_one_replica_reconciles_at_a_time(world: World):
    other = t.Lease(
        client=world.clients.dynamodb,
        table=world.settings.dispatches_table,
        name="reconciler",
        owner="other",
        duration_s=30,
    )
    assert other.acquire()
    assert world.engine.reconciler.tick() is None
    other.release()
    assert world.engine.reconciler.tick() is not None


def test_only_a_stop_costs_dynamodb_calls(world: World):
    task, dispatch_id = running_job(world)
    arn = task.runtime_ref
    calls = AwsCallCounter().watch(world.clients.dynamodb)
    # ECS reports each state of a task; none but STOPPED changes a task or its dispatch
    others = [detail(arn, v, status) for v, status in enumerate(("PENDING", "RUNNING", "DEACTIVATING"), 2)]
    assert world.engine.tracker.handle_batch(others) == 0
    assert calls.snapshot() == {}
    assert world.engine.tracker.handle_batch([detail(arn, 6, "STOPPED", containers=[{"exitCode": 1}])]) == 1
    assert world.get(dispatch_id).status is Status.FAILED
