"""Per-tenant `max_running`, enforced by run slots (DispatchStore.admit) and the admission pass.

A tenant never has more than `max_running` dispatches admitted (queued for a task, or running);
the rest wait PENDING without a queue message, so another tenant's first dispatch is never
behind them. Over the moto server (DynamoDB transactions over HTTP) and the real API.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from control_plane.engine.scaler import queued_jobs
from control_plane.lifecycle import Status
from control_plane.queueing import enqueue_dispatch
from control_plane.store import Actor, DispatchRecord
from control_plane.store.codec import decode_item, encode, encode_item
from control_plane.store.dispatches import new_dispatch_id
from tests.engine.conftest import World

SYSTEM = Actor.system("test")


def new_tenant(world: World, *, max_running: int, max_queued: int = 2000) -> tuple[str, str]:
    record, api_key = world.stores.tenants.create(
        name="quota", max_running=max_running, max_queued=max_queued, allowed_agents=None, actor=SYSTEM
    )
    return record.tenant_id, api_key


def submit(world: World, tenant_id: str, count: int) -> list[DispatchRecord]:
    """`count` dispatches as POST /dispatch makes them (record, then admit and enqueue)."""
    records = []
    for _ in range(count):
        record = world.stores.dispatches.create(
            record=DispatchRecord(
                dispatch_id=new_dispatch_id(), tenant_id=tenant_id, agent="shell", task="true", timeout_s=600
            ),
            actor=SYSTEM,
        )
        enqueue_dispatch(
            record,
            sqs=world.clients.sqs,
            queue_urls=world.settings.dispatch_queue_urls,
            store=world.stores.dispatches,
        )
        records.append(record)
    return records


def slots(world: World, tenant_id: str) -> int:
    item = world.clients.dynamodb.get_item(
        TableName=world.settings.tenants_table, Key={"tenant_id": encode(tenant_id)}, ConsistentRead=True
    )["Item"]
    return int(decode_item(item).get("run_slots", 0))


def claim_one(world: World) -> DispatchRecord | None:
    task, token = world.new_task()
    reply = world.claim(token, task.task_id)
    assert reply.status_code in (200, 204), reply.text
    return world.get(reply.json()["dispatch_id"]) if reply.status_code == 200 else None


def test_work_beyond_max_running_waits_unqueued_and_is_admitted_as_slots_free(world: World):
    tenant, _ = new_tenant(world, max_running=2)
    records = submit(world, tenant, 5)
    assert [world.get(r.dispatch_id).admitted for r in records] == [True, True, False, False, False]
    assert world.queue_depth() == 2
    assert slots(world, tenant) == 2
    assert world.engine.admission.tick() == 0  # no free slot: nothing moves

    first = claim_one(world)
    assert first is not None and first.status is Status.RUNNING
    world.stores.dispatches.transition(dispatch_id=first.dispatch_id, to=Status.COMPLETED, actor=SYSTEM)
    assert slots(world, tenant) == 1  # the terminal write gave the slot back
    assert world.engine.admission.tick() == 1
    assert world.get(records[2].dispatch_id).admitted  # oldest waiting first
    assert slots(world, tenant) == 2


def test_cancelling_a_waiting_or_queued_dispatch_frees_only_what_it_held(world: World):
    tenant, _ = new_tenant(world, max_running=1)
    queued, waiting = submit(world, tenant, 2)
    world.stores.dispatches.transition(dispatch_id=waiting.dispatch_id, to=Status.CANCELLED, actor=SYSTEM)
    assert slots(world, tenant) == 1
    world.stores.dispatches.transition(dispatch_id=queued.dispatch_id, to=Status.CANCELLED, actor=SYSTEM)
    assert slots(world, tenant) == 0


def test_a_requeued_dispatch_keeps_its_slot(world: World):
    tenant, _ = new_tenant(world, max_running=1)
    (record,) = submit(world, tenant, 1)
    started = claim_one(world)
    assert started is not None and started.dispatch_id == record.dispatch_id
    requeued = world.stores.dispatches.transition(
        dispatch_id=record.dispatch_id, to=Status.PENDING, actor=SYSTEM
    )
    assert requeued.admitted and requeued.attempt == 2
    assert slots(world, tenant) == 1


def test_concurrent_creates_through_the_api_never_admit_more_than_max_running(world: World):
    tenant, api_key = new_tenant(world, max_running=3)
    headers = {"Authorization": f"Bearer {api_key}"}

    def create(_: int) -> int:
        return world.client.post(
            "/dispatch", json={"agent": "shell", "task": "true"}, headers=headers
        ).status_code

    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(create, range(24)))
    assert codes == [202] * 24
    pending = [r for r in world.stores.dispatches.list(tenant_id=tenant, limit=100)[0]]
    assert len(pending) == 24
    assert sum(1 for r in pending if r.admitted) == 3
    assert slots(world, tenant) == 3
    assert world.queue_depth() == 3


def waiting_records(world: World, tenant_id: str, count: int) -> None:
    """`count` dispatches as `submit` leaves them once the tenant's slots are taken: PENDING,
    not admitted, no queue message (batch-written: hundreds of creates would be slow here)."""
    for start in range(0, count, 25):
        batch = []
        for i in range(start, min(start + 25, count)):
            at = f"2026-01-01T00:00:{i // 1000:02d}.{i % 1000:03d}000Z"
            record = DispatchRecord(
                dispatch_id=new_dispatch_id(), tenant_id=tenant_id, agent="shell", task="true",
                timeout_s=600, created_at=at, updated_at=at, timestamps={"PENDING": at},
            )  # fmt: skip
            batch.append({"PutRequest": {"Item": encode_item(record.to_item())}})
        world.clients.dynamodb.batch_write_item(RequestItems={world.settings.dispatches_table: batch})


def test_another_tenants_first_dispatch_is_not_behind_hundreds_waiting(world: World):
    busy, _ = new_tenant(world, max_running=2)
    submit(world, busy, 2)  # its two slots taken
    # 300, not 1000: the emulator answered one query of 1000 records past its client's
    # 10 s read timeout on a loaded 2-core CI machine; the order of admission does not change.
    waiting_records(world, busy, 300)
    assert world.engine.admission.tick() == 0  # still no free slot: none of the waiting queued
    assert world.queue_depth() == 2
    (first,) = submit(world, world.tenant_id, 1)
    assert world.get(first.dispatch_id).admitted
    # one claim cycle: every idle task claims once; at most max_running of the busy tenant's
    # jobs stand before the other tenant's first
    started = [claim_one(world) for _ in range(3)]
    assert first.dispatch_id in {r.dispatch_id for r in started if r is not None}
    # the scaler launches only for admitted work, not for the hundreds waiting
    assert queued_jobs(world.clients.dynamodb, world.settings.dispatches_table).get("shell", []) == []


def max_overlap(records: list[DispatchRecord]) -> int:
    """The most dispatches RUNNING at one moment, from their stored RUNNING and end times."""
    edges = []
    for record in records:
        edges.append((record.timestamps["RUNNING"], 1))
        edges.append((record.timestamps["COMPLETED"], -1))
    running = peak = 0
    for _, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):  # ends before starts on ties
        running += step
        peak = max(peak, running)
    return peak


def test_concurrent_admission_claims_and_completions_never_run_more_than_max_running(world: World):
    tenant, _ = new_tenant(world, max_running=3)
    records = submit(world, tenant, 15)
    done = threading.Event()

    def admit_loop() -> None:  # two replicas' admission passes at once
        while not done.is_set():
            world.engine.admission.tick()

    def worker() -> None:  # a runner: claim, run a moment, report
        while not done.is_set():
            started = claim_one(world)
            if started is not None:
                time.sleep(0.05)
                world.stores.dispatches.transition(
                    dispatch_id=started.dispatch_id, to=Status.COMPLETED, actor=SYSTEM
                )

    threads = [threading.Thread(target=admit_loop) for _ in range(2)]
    threads += [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            final = [world.get(r.dispatch_id) for r in records]
            if all(r.status is Status.COMPLETED for r in final):
                break
            time.sleep(0.5)
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert [r.status for r in final] == [Status.COMPLETED] * 15
    assert max_overlap(final) <= 3
    assert slots(world, tenant) == 0
