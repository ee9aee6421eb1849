"""A crash between stopping a cancelled dispatch's task and writing CANCELLED still ends it
CANCELLED: the cancel request is recorded first and the tracker and reconciler honour it."""

from __future__ import annotations

import time
from typing import Any

import pytest

from control_plane.engine import tasks as t
from control_plane.lifecycle import Status
from control_plane.runtime.base import LaunchRequest
from tests.engine.conftest import World


class CrashError(Exception):
    """The control plane dying right after StopTask (failure injection)."""


def launched_job(world: World) -> tuple[t.TaskRecord, str]:
    """A dispatch RUNNING on a real local task (a sleep process)."""
    record = world.dispatch()
    task, token = world.new_task()
    [launched] = world.runtime.launch(
        [LaunchRequest(agent="shell", task_id=task.task_id, client_token=task.client_token, env={})]
    )
    world.tasks.set_launched(task, runtime_ref=launched.runtime_ref, capacity=launched.capacity)
    assert world.claim(token, task.task_id).status_code == 200
    claimed = world.tasks.get(task.task_id)
    assert claimed is not None
    return claimed, record.dispatch_id


def cancel_and_crash_after_the_stop(world: World, dispatch_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """DELETE /dispatch/{id}; the process dies once StopTask returned, before CANCELLED is written."""
    store = world.stores.dispatches
    real_transition = store.transition

    def transition(**kwargs: Any) -> Any:
        if Status(kwargs["to"]) is Status.CANCELLED:
            raise CrashError
        return real_transition(**kwargs)

    monkeypatch.setattr(store, "transition", transition)
    with pytest.raises(CrashError):
        world.client.delete(f"/dispatch/{dispatch_id}", headers={"Authorization": f"Bearer {world.api_key}"})
    monkeypatch.setattr(store, "transition", real_transition)
    assert world.get(dispatch_id).status is Status.RUNNING


def wait_until_exited(world: World, task_id: str) -> None:
    deadline = time.monotonic() + 10
    while world.runtime.pid_of(task_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert world.runtime.pid_of(task_id) is None


def test_the_tracker_ends_a_dispatch_cancelled_by_a_crashed_request_cancelled(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    task, dispatch_id = launched_job(world)
    cancel_and_crash_after_the_stop(world, dispatch_id, monkeypatch)
    wait_until_exited(world, task.task_id)
    stopped = [e["detail"] for e in world.events if e["detail"].get("lastStatus") == "STOPPED"]
    assert stopped, "the runtime reported the stop"
    world.engine.tracker.handle_batch(stopped)
    record = world.get(dispatch_id)
    assert record.status is Status.CANCELLED, record.error


def test_the_reconciler_ends_a_dispatch_cancelled_by_a_crashed_request_cancelled(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.runtime.event_sink = None  # the stop event is lost: only the reconciler can notice
    task, dispatch_id = launched_job(world)
    cancel_and_crash_after_the_stop(world, dispatch_id, monkeypatch)
    wait_until_exited(world, task.task_id)
    world.tasks._client.update_item(  # claimed long enough ago to trust the runtime's listing
        TableName=world.settings.dispatches_table,
        Key={"dispatch_id": {"S": f"task#{task.task_id}"}},
        UpdateExpression="SET claimed_at = :c",
        ExpressionAttributeValues={":c": {"S": "2020-01-01T00:00:00.000000Z"}},
    )
    world.engine.reconciler.tick()
    assert world.get(dispatch_id).status is Status.CANCELLED


def test_a_cancel_that_completes_still_answers_cancelled(world: World) -> None:
    task, dispatch_id = launched_job(world)
    reply = world.client.delete(
        f"/dispatch/{dispatch_id}", headers={"Authorization": f"Bearer {world.api_key}"}
    )
    assert reply.status_code == 200 and reply.json()["status"] == "CANCELLED"
    wait_until_exited(world, task.task_id)
