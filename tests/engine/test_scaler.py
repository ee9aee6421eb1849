"""The scaler and warm pool over the emulator, launching real (sleep) processes.

The two-replica test runs two scalers (two owners, two runtimes, one table) at the same time
and checks that together they launch exactly what one would.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid

import boto3
from botocore.config import Config

from control_plane.aws import make_clients
from control_plane.engine import tasks as t
from control_plane.engine.config import EngineSettings
from control_plane.engine.scaler import Scaler
from control_plane.metrics import LAUNCH_FAILURES
from control_plane.runtime.base import client_token
from control_plane.runtime.local import LocalRuntime
from tests.engine.conftest import World


def scaler_for(
    world: World,
    *,
    warm: int,
    owner: str | None = None,
    runtime=None,
    lease_s: float = 5.0,
    own_clients: bool = False,
    **kw,
):
    # a replica of its own has its own AWS clients (another process, in production)
    dynamodb = make_clients(world.settings).dynamodb if own_clients else world.clients.dynamodb
    return Scaler(
        client=dynamodb,
        table=world.settings.dispatches_table,
        tasks=t.TaskStore(client=dynamodb, table=world.settings.dispatches_table),
        runtime=runtime or world.runtime,
        lease=t.Lease(
            client=dynamodb,
            table=world.settings.dispatches_table,
            name="scaler",
            owner=owner or f"replica-{uuid.uuid4().hex[:6]}",
            duration_s=lease_s,
        ),
        warm_pool={"shell": warm},
        spot={"shell": False},
        runner_env=lambda agent: {"OUTPOST_CONTROL_PLANE_URL": "http://127.0.0.1:9"},
        **kw,
    )


def live(world: World) -> list[t.TaskRecord]:
    return world.tasks.live(["shell"])


def test_warm_pool_is_filled_to_its_target_and_no_further(world: World):
    scaler = scaler_for(world, warm=2)
    assert scaler.tick() == {"shell": 2}
    assert scaler.tick() == {"shell": 0}
    tasks = live(world)
    assert len(tasks) == 2 and all(
        task.state == t.UNCLAIMED and task.launched_for == "warm" for task in tasks
    )
    assert len(world.runtime.list_tasks()) == 2


def test_queued_jobs_add_tasks_launched_with_deterministic_client_tokens(world: World):
    jobs = [world.dispatch() for _ in range(3)]
    scaler = scaler_for(world, warm=1)
    assert scaler.tick() == {"shell": 4}
    tasks = live(world)
    assert len(tasks) == 4
    for_jobs = {task.launched_for: task for task in tasks if task.launched_for != "warm"}
    assert set(for_jobs) == {f"{job.dispatch_id}#1" for job in jobs}
    for job in jobs:
        task = for_jobs[f"{job.dispatch_id}#1"]
        assert task.client_token == client_token(job.dispatch_id, 1)
        assert task.task_id == t.new_task_id(task.client_token)


def test_a_claimed_task_is_replaced_to_keep_the_pool_warm(world: World):
    scaler = scaler_for(world, warm=1)
    scaler.tick()
    [task] = live(world)
    world.tasks.move(task, t.CLAIMED, fields={"job": "d-x"})
    assert scaler.tick() == {"shell": 1}
    assert len([x for x in live(world) if x.state == t.UNCLAIMED]) == 1


def test_launches_stay_within_the_per_agent_limit(world: World):
    for _ in range(6):
        world.dispatch()
    scaler = scaler_for(world, warm=0, max_tasks_per_agent=4)
    scaler.tick()
    scaler.tick()
    assert len(live(world)) == 4


def test_idle_tasks_above_the_target_are_scaled_down(world: World):
    scaler = scaler_for(world, warm=3, idle_scale_down_s=0.0)
    scaler.tick()
    scaler.warm_pool["shell"] = 1
    scaler.tick()
    states = sorted(task.state for task in live(world))
    assert states == [t.STOPPING, t.STOPPING, t.UNCLAIMED]


def test_a_failed_launch_is_recorded_and_retried_on_the_next_pass(world: World, tmp_path):
    broken = LocalRuntime(state_dir=tmp_path / "broken", command=("/nonexistent/outpost-runner",))
    try:
        scaler = scaler_for(world, warm=1, runtime=broken)
        assert scaler.tick() == {"shell": 0}
        assert live(world) == []
        assert scaler.metrics.snapshot()["shell"][LAUNCH_FAILURES] == 1
        scaler.runtime = world.runtime
        assert scaler.tick() == {"shell": 1}
    finally:
        broken.close()


def test_two_replicas_scaling_at_once_launch_exactly_what_one_would(world: World, tmp_path):
    for _ in range(3):
        world.dispatch()
    runtimes = [
        LocalRuntime(state_dir=tmp_path / f"replica-{n}", command=("sleep", "300"), stop_grace_s=1.0)
        for n in range(2)
    ]
    scalers = [
        scaler_for(world, warm=2, owner=f"replica-{n}", runtime=runtimes[n], own_clients=True)
        for n in range(2)
    ]
    results: list[list] = [[], []]
    start = threading.Barrier(2)

    def run(n: int) -> None:
        start.wait()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            results[n].append(scalers[n].tick())

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        processes = sum(len(r.list_tasks()) for r in runtimes)
        assert processes == 2 + 3, results
        assert len(live(world)) == 5
        # exactly one replica held the lease throughout; the other never scaled
        leaders = [n for n in range(2) if any(r is not None for r in results[n])]
        assert len(leaders) == 1, results
        follower = 1 - leaders[0]
        assert all(r is None for r in results[follower])
    finally:
        for runtime in runtimes:
            runtime.close(stop_tasks=True, timeout_s=5)


def test_a_replica_takes_over_when_the_leader_stops_renewing(world: World):
    leader = scaler_for(world, warm=1, owner="leader", lease_s=30)
    follower = scaler_for(world, warm=2, owner="follower", lease_s=30)
    assert leader.tick() == {"shell": 1}
    assert follower.tick() is None
    # the leader crashed 30 s ago: its lease has run out (written as time would have left it)
    world.clients.dynamodb.update_item(
        TableName=world.settings.dispatches_table,
        Key={"dispatch_id": {"S": "lease#scaler"}},
        UpdateExpression="SET lease_until = :past",
        ExpressionAttributeValues={":past": {"N": str(time.time() - 1)}},
    )
    assert follower.tick() == {"shell": 1}
    assert leader.tick() is None


def test_scaler_runs_the_real_runner_command_by_default():
    assert LocalRuntime.__dataclass_fields__["command"].default == (sys.executable, "-m", "agents.runner")


class SteppingClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class SlowRuntime:
    """A runtime whose every launch takes ``seconds`` of the clock (RunTask retries, fallbacks)."""

    def __init__(self, inner, clock: SteppingClock, seconds: float) -> None:
        self.inner, self.clock, self.seconds = inner, clock, seconds

    def launch(self, requests):
        self.clock.now += self.seconds * len(requests)
        return self.inner.launch(requests)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_pass_that_outlives_its_lease_stops_launching(world: World):
    lease_s = EngineSettings().lease_s  # the production lease
    clock = SteppingClock()
    scaler = scaler_for(world, warm=5, runtime=SlowRuntime(world.runtime, clock, lease_s * 0.4))
    scaler.lease = t.Lease(
        client=world.clients.dynamodb,
        table=world.settings.dispatches_table,
        name="scaler",
        owner="slow-leader",
        duration_s=lease_s,
        clock=clock,
    )
    # renewed at 0; launches at 0, 0.4 and 0.8 of the lease; at 1.2 it has run out, and another
    # replica may be scaling the same pool: this pass launches nothing more
    assert scaler.tick() == {"shell": 3}
    assert len(live(world)) == 3 and len(world.runtime.list_tasks()) == 3


def test_racing_replicas_never_hold_one_lease_together(world: World):
    table = world.settings.dispatches_table
    # one connection per replica, so that the 20 conditional writes reach the store together
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=world.settings.aws_endpoint_url,
        config=Config(max_pool_connections=20),
    )
    leases = [
        t.Lease(
            client=dynamodb,
            table=table,
            name="race",
            owner=f"replica-{n}",
            duration_s=EngineSettings().lease_s,
        )
        for n in range(20)
    ]
    for _ in range(3):
        start = threading.Barrier(len(leases))
        won: list[str] = []

        def race(lease: t.Lease, start: threading.Barrier, won: list[str]) -> None:
            start.wait()
            if lease.acquire():
                won.append(lease.owner)

        threads = [threading.Thread(target=race, args=(lease, start, won)) for lease in leases]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) == 1, won
        [holder] = [lease for lease in leases if lease.owner == won[0]]
        assert [lease.owner for lease in leases if lease.held()] == won
        holder.release()  # the next round starts from a free lease


def test_new_work_is_admitted_and_scaled_for_at_once_not_at_the_next_pass(
    moto_endpoint: str, tmp_path
) -> None:
    """The engine's passes run at their interval (an hour here, so that only a wake-up explains a
    pass) and at once for work this replica sees: a dispatch it queued is launched for, and the
    run slot a cancel frees admits the tenant's waiting dispatch."""
    from control_plane.store import Actor
    from tests.e2e.helpers import wait_for
    from tests.engine.conftest import make_world

    world = make_world(
        moto_endpoint, tmp_path, engine_enabled=True, scale_interval_s=3600, reconcile_interval_s=3600
    )
    passes = {"admission": 0, "scaler": 0}

    def counted(name: str, step):
        def run():
            result = step()
            passes[name] += 1
            return result

        return run

    world.engine.admission.tick = counted("admission", world.engine.admission.tick)  # type: ignore[method-assign]
    world.engine.scaler.tick = counted("scaler", world.engine.scaler.tick)  # type: ignore[method-assign]
    _, key = world.stores.tenants.create(
        name="one-slot", max_running=1, max_queued=5, allowed_agents=None, actor=Actor.system("test")
    )
    auth = {"Authorization": f"Bearer {key}"}
    world.engine.start()
    try:
        wait_for(lambda: passes == {"admission": 1, "scaler": 1}, 10, what="the passes at start")
        first = world.client.post("/dispatch", json={"agent": "shell", "task": "echo 1"}, headers=auth)
        assert first.status_code == 202, first.text
        wait_for(lambda: world.tasks.live(["shell"]), 10, what="a task launched for the dispatch")
        second = world.client.post("/dispatch", json={"agent": "shell", "task": "echo 2"}, headers=auth)
        waiting = second.json()["dispatch_id"]
        assert not world.get(waiting).admitted  # the tenant's one run slot is taken
        assert (
            world.client.delete(f"/dispatch/{first.json()['dispatch_id']}", headers=auth).status_code == 200
        )
        wait_for(lambda: world.get(waiting).admitted, 10, what="the waiting dispatch admitted")
        # (no second launch: the first dispatch's task, still unclaimed, serves the second)
    finally:
        world.engine.stop(stop_tasks=True)
    assert passes["scaler"] < 10 and passes["admission"] < 10  # woken, not polling


def test_a_job_claimed_during_a_pass_gets_no_second_task(world: World, monkeypatch):
    """A pass reads the queued jobs once, then each agent's tasks. A claim that lands between
    the two reads leaves the job in the pass's queue while its task is no longer idle: the job
    must not get another task (seen in a run: a second grok task, idle until scaled down; on
    ECS a Fargate task idle for ``idle_scale_down_s``)."""
    from pathlib import Path

    from control_plane.engine import scaler as scaling

    job = world.dispatch()
    scaler = scaler_for(world, warm=0)
    assert scaler.tick() == {"shell": 1}
    [task] = live(world)
    queued_before_the_claim = scaling.queued_jobs(world.clients.dynamodb, world.settings.dispatches_table)
    assert [q.dispatch_id for q in queued_before_the_claim["shell"]] == [job.dispatch_id]

    # the task's runner claims the job, through the API, with the token its launch gave it
    pid = world.runtime._tasks[task.task_id].pid
    environ = dict(
        entry.split("=", 1) for entry in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in entry
    )
    claimed = world.claim(environ["OUTPOST_CLAIM_TOKEN"], task.task_id)
    assert claimed.status_code == 200 and claimed.json()["dispatch_id"] == job.dispatch_id, claimed.text

    monkeypatch.setattr(scaling, "queued_jobs", lambda client, table: queued_before_the_claim)
    assert scaler.tick() == {"shell": 0}
    assert [(x.task_id, x.state) for x in live(world)] == [(task.task_id, t.CLAIMED)]
