"""A runner killed mid-job whose stop event never arrives (EventBridge and SQS lose nothing, but a
control plane may die between a stop and its event): the engine's own reconciler loop fails the
dispatch, once the launch grace has passed and within one reconcile interval after it.

The grace and interval are short here; what the test holds is their relation, the same for
AWS's defaults (120 s and 15 s): never before the grace (a task not yet in the runtime's
listing is not gone), and no later than the first pass after it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from control_plane.lifecycle import Status
from control_plane.runtime.base import LaunchRequest
from tests.engine.conftest import World, make_world

LAUNCH_GRACE_S = 3.0
RECONCILE_INTERVAL_S = 2.0


@pytest.fixture
def looping_world(moto_endpoint: str, tmp_path) -> Iterator[World]:
    world = make_world(
        moto_endpoint,
        tmp_path,
        engine_enabled=True,
        launch_grace_s=LAUNCH_GRACE_S,
        reconcile_interval_s=RECONCILE_INTERVAL_S,
    )
    try:
        yield world
    finally:
        world.engine.stop(stop_tasks=True)


def test_a_killed_runner_whose_stop_event_is_lost_fails_within_grace_plus_one_interval(
    looping_world: World,
) -> None:
    world = looping_world
    world.runtime.event_sink = None  # the task's stop event never reaches the tracker
    record = world.dispatch()
    task, token = world.new_task()
    [launched] = world.runtime.launch(
        [LaunchRequest(agent="shell", task_id=task.task_id, client_token=task.client_token, env={})]
    )
    world.tasks.set_launched(task, runtime_ref=launched.runtime_ref, capacity=launched.capacity)
    claimed = time.monotonic()  # just before the claim: the grace runs from its write
    assert world.claim(token, task.task_id).status_code == 200
    pid = world.runtime.pid_of(task.task_id)
    assert pid is not None and world.get(record.dispatch_id).status is Status.RUNNING
    os.kill(pid, signal.SIGKILL)
    world.engine.start()  # the loops at their intervals, as in the control plane

    deadline = claimed + LAUNCH_GRACE_S + 3 * RECONCILE_INTERVAL_S + 10
    while (current := world.get(record.dispatch_id)).status is Status.RUNNING:
        assert time.monotonic() < deadline, "the reconciler never failed the dispatch"
        time.sleep(0.05)
    took = time.monotonic() - claimed
    print(
        f"lost stop event: {current.status} {took:.2f} s after the claim (grace {LAUNCH_GRACE_S:g} s, "
        f"reconcile interval {RECONCILE_INTERVAL_S:g} s)"
    )
    assert current.status is Status.FAILED, current
    assert "the task is gone" in (current.error or ""), current.error
    # not before the grace: the listing is trusted only then; then at the next pass (plus one
    # interval of slack for a pass slowed down by a busy machine)
    assert LAUNCH_GRACE_S <= took <= LAUNCH_GRACE_S + 2 * RECONCILE_INTERVAL_S, took
