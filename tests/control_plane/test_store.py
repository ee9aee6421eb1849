"""The dispatch store on DynamoDB (moto over HTTP): optimistic locking, lifecycle, queueing, audit."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from control_plane import lifecycle
from control_plane.aws import AwsClients, make_clients
from control_plane.lifecycle import TERMINAL, TRANSITIONS, IllegalTransitionError, Status
from control_plane.queueing import enqueue_dispatch
from control_plane.store import Actor, DispatchRecord, NotFoundError, Stores, VersionConflictError
from control_plane.store.dispatches import new_dispatch_id
from tests.control_plane.helpers import fresh_resources, settings_for

ACTOR = Actor.system("test", request_id="req-test-0001")


@pytest.fixture(scope="module")
def clients(moto_endpoint: str) -> AwsClients:
    return make_clients(settings_for(moto_endpoint, fresh_resources(moto_endpoint)))


@pytest.fixture(scope="module")
def stores(moto_endpoint: str, clients: AwsClients) -> Stores:
    config = settings_for(moto_endpoint, fresh_resources(moto_endpoint))
    return Stores.from_settings(config, clients)


def _new(stores: Stores, tenant_id: str = "t-store", agent: str = "shell") -> DispatchRecord:
    record = DispatchRecord(
        dispatch_id=new_dispatch_id(), tenant_id=tenant_id, agent=agent, task="true", timeout_s=60
    )
    return stores.dispatches.create(record=record, actor=ACTOR)


def test_transition_twenty_concurrent_conflicting_exactly_one_wins(stores: Stores) -> None:
    record = _new(stores)
    targets = [Status.RUNNING, Status.CANCELLED, Status.FAILED, Status.RUNNING]
    barrier = threading.Barrier(20)
    won: list[Status] = []
    conflicts: list[Exception] = []
    others: list[Exception] = []

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            stores.dispatches.transition(
                dispatch_id=record.dispatch_id, to=targets[i % 4], actor=ACTOR, expected_version=1
            )
            won.append(targets[i % 4])
        except VersionConflictError as error:
            conflicts.append(error)
        except Exception as error:  # pragma: no cover - reported by the assertion below
            others.append(error)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert others == []
    assert len(won) == 1
    assert len(conflicts) == 19
    final = stores.dispatches.get(dispatch_id=record.dispatch_id, tenant_id=None)
    assert final is not None
    assert (final.status, final.version) == (won[0], 2)
    moves = [
        a for a in stores.audit.list(tenant_id="t-store", limit=500) if a["target"] == record.dispatch_id
    ]
    assert [a["action"] for a in moves] == ["dispatch.transition", "dispatch.create"]


def test_transition_refuses_illegal_move_and_writes_nothing(stores: Stores) -> None:
    record = _new(stores)
    with pytest.raises(IllegalTransitionError):
        stores.dispatches.transition(dispatch_id=record.dispatch_id, to=Status.COMPLETED, actor=ACTOR)
    after = stores.dispatches.get(dispatch_id=record.dispatch_id, tenant_id=None)
    assert after is not None and (after.status, after.version) == (Status.PENDING, 1)


def test_transition_with_stale_version_conflicts(stores: Stores) -> None:
    record = _new(stores)
    stores.dispatches.transition(dispatch_id=record.dispatch_id, to=Status.RUNNING, actor=ACTOR)
    with pytest.raises(VersionConflictError):
        stores.dispatches.transition(
            dispatch_id=record.dispatch_id, to=Status.FAILED, actor=ACTOR, expected_version=1
        )


def test_transition_unknown_or_other_tenant_is_not_found(stores: Stores) -> None:
    record = _new(stores, tenant_id="t-a")
    with pytest.raises(NotFoundError):
        stores.dispatches.transition(
            dispatch_id=record.dispatch_id, to=Status.RUNNING, actor=ACTOR, tenant_id="t-b"
        )
    with pytest.raises(NotFoundError):
        stores.dispatches.transition(dispatch_id="d-missing", to=Status.RUNNING, actor=ACTOR)


def test_transition_requeue_raises_attempt_and_needs_enqueue(stores: Stores) -> None:
    record = _new(stores)
    stores.dispatches.mark_enqueued(dispatch_id=record.dispatch_id, attempt=1)
    stores.dispatches.transition(
        dispatch_id=record.dispatch_id, to=Status.RUNNING, actor=ACTOR, changes={"task_id": "task-1"}
    )
    requeued = stores.dispatches.transition(dispatch_id=record.dispatch_id, to=Status.PENDING, actor=ACTOR)
    stored = stores.dispatches.get(dispatch_id=record.dispatch_id, tenant_id=None)
    assert stored == requeued
    assert (stored.attempt, stored.enqueued, stored.task_id, stored.version) == (2, False, None, 3)


def test_create_refuses_to_overwrite_existing_dispatch(stores: Stores) -> None:
    record = _new(stores)
    with pytest.raises(VersionConflictError):
        stores.dispatches.create(record=record, actor=ACTOR)


def test_enqueue_failure_leaves_record_for_reconciler(stores: Stores, clients: AwsClients) -> None:
    """A crash or SQS error between the write and the send loses nothing."""
    tenant, _ = stores.tenants.create(
        name="store", max_running=1, max_queued=10, allowed_agents=None, actor=ACTOR
    )
    record = _new(stores, tenant_id=tenant.tenant_id)
    sqs = clients.sqs
    gone = sqs.create_queue(QueueName="deleted-before-send")["QueueUrl"]
    sqs.delete_queue(QueueUrl=gone)
    broken = {"shell": gone}
    assert enqueue_dispatch(record, sqs=sqs, queue_urls=broken, store=stores.dispatches) is False
    waiting = [r.dispatch_id for r in stores.dispatches.unenqueued(older_than_s=0)]
    assert record.dispatch_id in waiting

    queue = sqs.create_queue(QueueName="reconciler-test")["QueueUrl"]
    assert enqueue_dispatch(record, sqs=sqs, queue_urls={"shell": queue}, store=stores.dispatches) is True
    assert record.dispatch_id not in [r.dispatch_id for r in stores.dispatches.unenqueued(older_than_s=0)]
    body = json.loads(sqs.receive_message(QueueUrl=queue)["Messages"][0]["Body"])
    assert body == {
        "dispatch_id": record.dispatch_id,
        "tenant_id": tenant.tenant_id,
        "agent": "shell",
        "attempt": 1,
    }


def test_unenqueued_skips_recent_records(stores: Stores) -> None:
    record = _new(stores)
    assert record.dispatch_id not in [r.dispatch_id for r in stores.dispatches.unenqueued(older_than_s=300)]


def test_audit_records_who_what_when_and_request(stores: Stores) -> None:
    record = _new(stores, tenant_id="t-audited")
    stores.dispatches.transition(dispatch_id=record.dispatch_id, to=Status.CANCELLED, actor=ACTOR)
    entries = stores.audit.list(tenant_id="t-audited")
    assert [e["action"] for e in entries] == ["dispatch.transition", "dispatch.create"]
    newest = entries[0]
    assert newest["actor"] == "system:test"
    assert newest["request_id"] == "req-test-0001"
    assert newest["details"] == {"from": "PENDING", "to": "CANCELLED", "version": 2}
    assert newest["expires_at"] > 0 and newest["at"].endswith("Z")


def test_lifecycle_table_terminal_states_are_final() -> None:
    for status in TERMINAL:
        assert TRANSITIONS[status] == frozenset()
    assert lifecycle.transition("PENDING", "RUNNING") is Status.RUNNING
    with pytest.raises(IllegalTransitionError, match="final"):
        lifecycle.transition(Status.COMPLETED, Status.RUNNING)


class LifecycleMachine(RuleBasedStateMachine):
    """Random sequences of transitions against the real store follow the lifecycle table exactly."""

    stores: Stores

    @initialize()
    def create(self) -> None:
        self.record = _new(self.stores, tenant_id="t-machine")
        self.status = Status.PENDING
        self.version = 1
        self.attempt = 1

    @rule(to=st.sampled_from(list(Status)))
    def move(self, to: Status) -> None:
        allowed = to in TRANSITIONS[self.status]
        try:
            result = self.stores.dispatches.transition(
                dispatch_id=self.record.dispatch_id, to=to, actor=ACTOR, expected_version=self.version
            )
        except IllegalTransitionError:
            assert not allowed
            return
        assert allowed
        if to is Status.PENDING:
            self.attempt += 1
        self.status, self.version = to, self.version + 1
        assert (result.status, result.version, result.attempt) == (self.status, self.version, self.attempt)

    @rule()
    def stale_write_conflicts(self) -> None:
        targets = sorted(TRANSITIONS[self.status])
        if self.version > 1 and targets:
            with pytest.raises(VersionConflictError):
                self.stores.dispatches.transition(
                    dispatch_id=self.record.dispatch_id,
                    to=targets[0],
                    actor=ACTOR,
                    expected_version=self.version - 1,
                )

    @invariant()
    def stored_matches_model(self) -> None:
        if not hasattr(self, "record"):
            return
        stored = self.stores.dispatches.get(dispatch_id=self.record.dispatch_id, tenant_id=None)
        assert stored is not None
        assert (stored.status, stored.version, stored.attempt) == (self.status, self.version, self.attempt)


def test_lifecycle_state_machine(stores: Stores) -> None:
    LifecycleMachine.stores = stores
    machine: Any = LifecycleMachine
    runner = machine.TestCase
    runner.settings = settings(
        max_examples=15, stateful_step_count=8, deadline=None, suppress_health_check=list(HealthCheck)
    )
    runner().runTest()


def test_an_end_written_from_a_record_read_before_its_admission_is_refused(stores: Stores) -> None:
    """Admission changes no version, so the condition of a transition holds the admission too:
    ending a dispatch from a record read before it was admitted would keep its run slot taken."""
    system = Actor.system("test")
    tenant, _ = stores.tenants.create(
        name="slots", max_running=0, max_queued=5, allowed_agents=None, actor=system
    )
    waiting = stores.dispatches.create(
        record=DispatchRecord(
            dispatch_id=new_dispatch_id(), tenant_id=tenant.tenant_id, agent="shell", task="x", timeout_s=60
        ),
        actor=system,
    )
    assert not waiting.admitted  # no slot yet
    stores.tenants.update(tenant_id=tenant.tenant_id, fields={"max_running": 1}, actor=system)
    assert stores.dispatches.admit(record=waiting) is not None  # admitted meanwhile
    assert stores.tenants.get(tenant_id=tenant.tenant_id).run_slots == 1
    with pytest.raises(VersionConflictError):
        stores.dispatches.transition(
            dispatch_id=waiting.dispatch_id, to=Status.CANCELLED, actor=system,
            expected_version=waiting.version, current=waiting,
        )  # fmt: skip
    ended = stores.dispatches.transition(dispatch_id=waiting.dispatch_id, to=Status.CANCELLED, actor=system)
    assert ended.status is Status.CANCELLED
    assert stores.tenants.get(tenant_id=tenant.tenant_id).run_slots == 0
