"""The engine's metrics, emitted at the moment each thing happens with exactly the declared
dimensions: failures by agent and reason, dead letters, reconciler failures, claim failures,
task failures and the scaler's pool gauges.

Each scenario drives a real engine world (tables and queues in the moto server over HTTP, the
local runtime's processes) with the engine's production timings (grace periods, deadlines),
and ages records in the table instead of shortening a setting. The scenarios are also what
tests/infra/test_metrics_contract.py runs to learn which metrics the control plane emits.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agents import error_kinds
from control_plane import metrics
from control_plane.engine import tasks as t
from control_plane.engine.config import EngineSettings
from control_plane.lifecycle import TERMINAL, Status
from control_plane.runtime.base import LaunchRequest
from control_plane.runtime.local import LocalRuntime
from control_plane.store import Actor
from tests.engine.conftest import World, make_world

LONG_AGO = "2020-01-01T00:00:00.000000Z"
# constructs/work_queue.py's receive limit for dispatch queues (tests/engine/test_deadletters.py)
MAX_RECEIVES = 5


# -- capture -------------------------------------------------------------------------------


@dataclass
class Emitted:
    """The EMF documents emitted, as the CloudWatch agent would read them."""

    documents: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, line: str) -> None:
        self.documents.append(json.loads(line))

    def of(self, name: str) -> list[dict[str, Any]]:
        return [d for d in self.documents if name in names_in(d)]

    def dimensions_of(self, name: str) -> list[dict[str, str]]:
        """Per document carrying `name`: its dimension name -> value."""
        return [{dim: d[dim] for dim in dimension_set(d)} for d in self.of(name)]

    def pairs(self) -> set[tuple[str, frozenset[str]]]:
        return {(name, frozenset(dimension_set(d))) for d in self.documents for name in names_in(d)}

    def values(self) -> dict[str, set[str]]:
        """Dimension name -> the values emitted for it."""
        out: dict[str, set[str]] = {}
        for document in self.documents:
            for dim in dimension_set(document):
                out.setdefault(dim, set()).add(document[dim])
        return out


def names_in(document: dict[str, Any]) -> set[str]:
    return {m["Name"] for d in document["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}


def dimension_set(document: dict[str, Any]) -> list[str]:
    [directive] = document["_aws"]["CloudWatchMetrics"]
    [dims] = directive["Dimensions"]
    assert directive["Namespace"] == metrics.NAMESPACE
    return list(dims)


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> Emitted:
    capture = Emitted()
    monkeypatch.setattr(metrics, "sink", capture)
    return capture


def production_world(moto_endpoint: str, tmp_path: Path) -> World:
    """An engine world with the engine's default grace periods (make_world shortens them)."""
    defaults = EngineSettings()
    return make_world(
        moto_endpoint,
        tmp_path,
        timeout_grace_s=defaults.timeout_grace_s,
        launch_grace_s=defaults.launch_grace_s,
        max_pending_s=defaults.max_pending_s,
    )


@pytest.fixture
def world(moto_endpoint: str, tmp_path: Path) -> Iterator[World]:
    instance = production_world(moto_endpoint, tmp_path)
    try:
        yield instance
    finally:
        instance.runtime.close(stop_tasks=True, timeout_s=5)


# -- steps shared by the scenarios ---------------------------------------------------------


def age_dispatch(world: World, dispatch_id: str, expression: str, names: dict[str, str]) -> None:
    world.clients.dynamodb.update_item(
        TableName=world.settings.dispatches_table,
        Key={"dispatch_id": {"S": dispatch_id}},
        UpdateExpression=expression,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues={":old": {"S": LONG_AGO}},
    )


def age_task(world: World, task_id: str) -> None:
    """Created and claimed long ago: older than any launch grace."""
    world.clients.dynamodb.update_item(
        TableName=world.settings.dispatches_table,
        Key={"dispatch_id": {"S": f"task#{task_id}"}},
        UpdateExpression="SET created_at = :old, claimed_at = :old",
        ExpressionAttributeValues={":old": {"S": LONG_AGO}},
    )


def started(world: World, *, warm: bool, real_task: bool = False) -> tuple[t.TaskRecord, dict[str, Any]]:
    """A dispatch claimed by a task: a warm-pool task (recorded before the dispatch) or one
    launched for it. real_task: a process of the local runtime, else a runtime reference only."""
    record = None if warm else world.dispatch()
    task, token = world.new_task()
    if real_task:
        [launched] = world.runtime.launch(
            [LaunchRequest(agent="shell", task_id=task.task_id, client_token=task.client_token, env={})]
        )
        ref = launched.runtime_ref
    else:
        ref = f"arn:aws:ecs:us-east-1:111111111111:task/outpost/{task.task_id}"
    world.tasks.set_launched(task, runtime_ref=ref, capacity="FARGATE")
    if record is None:
        record = world.dispatch()
    reply = world.claim(token, task.task_id)
    assert reply.status_code == 200, reply.text
    job = reply.json()
    assert job["dispatch_id"] == record.dispatch_id
    claimed = world.tasks.get(task.task_id)
    assert claimed is not None and claimed.state == t.CLAIMED
    return claimed, job


def report(
    world: World, job: dict[str, Any], outcome: str, exit_code: int | None, error_kind: str | None = None
) -> None:
    """The runner's report; ``error_kind`` as the runner puts it into the summary."""
    summary = {} if error_kind is None else {"error_kind": error_kind}
    reply = world.client.post(
        f"/internal/dispatches/{job['dispatch_id']}/result",
        json={"outcome": outcome, "exit_code": exit_code, "summary": summary},
        headers={"Authorization": f"Bearer {job['job_token']}"},
    )
    assert reply.status_code == 200, reply.text


def stopped_event(task: t.TaskRecord, version: int, **detail: Any) -> dict[str, Any]:
    return {"taskArn": task.runtime_ref, "version": version, "lastStatus": "STOPPED", **detail}


# -- scenarios -----------------------------------------------------------------------------


def completed_on_a_warm_task(world: World) -> None:
    _, job = started(world, warm=True)
    report(world, job, "COMPLETED", 0)


def failed_by_the_agent_after_a_cold_start(world: World) -> None:
    _, job = started(world, warm=False)
    report(world, job, "FAILED", 1)


def failed_by_the_model_api(world: World) -> None:
    _, job = started(world, warm=True)
    report(world, job, "FAILED", 1, error_kinds.API)


def failed_on_the_network(world: World) -> None:
    _, job = started(world, warm=True)
    report(world, job, "FAILED", 1, error_kinds.NETWORK)


def timed_out_by_the_runner(world: World) -> None:
    _, job = started(world, warm=True)
    report(world, job, "TIMED_OUT", None)


def cancelled(world: World) -> None:
    record = world.dispatch()
    world.stores.dispatches.transition(
        dispatch_id=record.dispatch_id, to=Status.CANCELLED, actor=Actor.system("t")
    )


OOM_CONTAINER = {"exitCode": 137, "reason": "OutOfMemoryError: Container killed due to memory usage"}


def task_killed_for_memory(world: World) -> None:
    task, _ = started(world, warm=True)
    event = stopped_event(
        task,
        3,
        stopCode="EssentialContainerExited",
        stoppedReason="Essential container in task exited",
        containers=[OOM_CONTAINER],
    )
    assert world.engine.tracker.handle_batch([event]) == 1


def task_crashed(world: World) -> None:
    task, _ = started(world, warm=True)
    event = stopped_event(
        task,
        3,
        stopCode="EssentialContainerExited",
        stoppedReason="Essential container in task exited",
        containers=[{"exitCode": 1}],
    )
    assert world.engine.tracker.handle_batch([event]) == 1


SPOT = {"stopCode": "SpotInterruption", "stoppedReason": "Your Spot Task was interrupted."}


def interrupted_until_the_attempts_ran_out(world: World) -> None:
    task, job = started(world, warm=True)
    for attempt in range(1, world.engine.config.max_attempts + 1):
        assert job["attempt"] == attempt
        assert world.engine.tracker.handle_batch([stopped_event(task, 2, **SPOT)]) == 1
        if attempt < world.engine.config.max_attempts:  # requeued: a new task claims it
            task, token = world.new_task()
            world.tasks.set_launched(
                task, runtime_ref=f"arn:aws:ecs:::task/outpost/{task.task_id}", capacity="X"
            )
            job = world.claim(token, task.task_id).json()
            task = world.tasks.get(task.task_id) or task


def timed_out_by_the_reconciler(world: World) -> None:
    _, job = started(world, warm=True, real_task=True)
    age_dispatch(world, job["dispatch_id"], "SET #ts.#r = :old", {"#ts": "timestamps", "#r": "RUNNING"})
    counts = world.engine.reconciler.tick()
    assert counts is not None and counts["timed_out"] == 1


def never_started(world: World) -> None:
    record = world.dispatch()
    age_dispatch(
        world, record.dispatch_id, "SET #u = :old, #c = :old", {"#u": "updated_at", "#c": "created_at"}
    )
    counts = world.engine.reconciler.tick()
    assert counts is not None and counts["expired"] == 1


def task_lost_by_the_runtime(world: World) -> None:
    task, _ = started(world, warm=True)  # its runtime reference is unknown to the local runtime
    age_task(world, task.task_id)
    counts = world.engine.reconciler.tick()
    assert counts is not None and counts["vanished"] == 1


def dead_lettered(world: World) -> None:
    world.dispatch()
    sqs, url = world.clients.sqs, world.settings.dispatch_queue_urls["shell"]
    for _ in range(MAX_RECEIVES):  # five claims that received the job and died
        assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, VisibilityTimeout=0).get("Messages")
    assert not sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages")  # moved to the DLQ
    counts = world.engine.reconciler.tick()
    assert counts is not None and counts["dead_lettered"] == 1


def budget_spent(world: World) -> None:
    """The model gateway charged a call that spent the dispatch's budget."""
    world.stores.tenants.update(
        tenant_id=world.tenant_id, fields={"budget_dispatch_usd": 0.01}, actor=Actor.system("test")
    )
    record = world.dispatch()
    task, token = world.new_task()
    assert world.claim(token, task.task_id).status_code == 200
    spent = world.stores.dispatches.add_gateway_usage(
        dispatch_id=record.dispatch_id,
        input_tokens=1,
        cached_input_tokens=0,
        output_tokens=1,
        cost_usd=0.02,
        model=None,
    )
    assert spent == 0.02
    assert world.engine.budgets.charge(world.tenant_id, record.dispatch_id, 0.02, spent) is not None
    assert world.get(record.dispatch_id).status is Status.FAILED


def claim_with_a_spent_token(world: World) -> None:
    record = world.dispatch()
    task, token = world.new_task()
    job = world.claim(token, task.task_id).json()
    assert job["dispatch_id"] == record.dispatch_id
    world.client.post(  # the runner uses its job
        f"/internal/dispatches/{record.dispatch_id}/logs",
        json={"lines": ["started"]},
        headers={"Authorization": f"Bearer {job['job_token']}"},
    ).raise_for_status()
    assert world.claim(token, task.task_id).status_code == 401  # the same claim token again


def claim_past_its_deadline(world: World) -> None:
    """The claim's poll came back after the runner stopped waiting: the job is let go."""
    record = world.dispatch()
    task, token = world.new_task()
    claims = world.engine.claims
    real_clock, ticks = claims.clock, iter([0.0])  # the request arrives; every later reading is late
    claims.clock = lambda: next(ticks, claims.commit_deadline_s + 1.0)
    try:
        assert world.claim(token, task.task_id).status_code == 204
    finally:
        claims.clock = real_clock
    assert world.get(record.dispatch_id).status is Status.PENDING


def scaler_passes(world: World) -> None:
    """A warm pool of one filled by one pass and seen idle by the next, beside a running job."""
    started(world, warm=True)
    scaler = world.engine.scaler
    scaler.warm_pool["shell"] = 1
    assert scaler.tick() == {**{agent: 0 for agent in scaler.warm_pool}, "shell": 1}
    scaler.tick()


def launch_refused(world: World) -> None:
    scaler = world.engine.scaler
    broken = LocalRuntime(
        state_dir=world.runtime.state_dir / "broken", command=("/nonexistent/outpost-runner",)
    )
    scaler.runtime, real = broken, scaler.runtime
    try:
        scaler.warm_pool["shell"] = 1
        assert scaler.tick()["shell"] == 0
    finally:
        scaler.runtime = real
        broken.close()


SCENARIOS: tuple[Callable[[World], None], ...] = (
    completed_on_a_warm_task,
    failed_by_the_agent_after_a_cold_start,
    failed_by_the_model_api,
    failed_on_the_network,
    timed_out_by_the_runner,
    cancelled,
    task_killed_for_memory,
    task_crashed,
    interrupted_until_the_attempts_ran_out,
    timed_out_by_the_reconciler,
    never_started,
    task_lost_by_the_runtime,
    dead_lettered,
    budget_spent,
    claim_with_a_spent_token,
    claim_past_its_deadline,
    scaler_passes,
    launch_refused,
)


def run_scenario(scenario: Callable[[World], None], moto_endpoint: str, tmp_path: Path) -> None:
    world = production_world(moto_endpoint, tmp_path / uuid.uuid4().hex[:8])
    try:
        scenario(world)
    finally:
        world.runtime.close(stop_tasks=True, timeout_s=5)


# -- the catalogue -------------------------------------------------------------------------


def test_every_metric_has_one_definition_with_a_unit_and_known_dimensions() -> None:
    assert set(metrics.CATALOGUE) == set(metrics.UNITS) == set(metrics.DIMENSIONS)
    known = {metrics.DIM_AGENT, *metrics.DIMENSION_VALUES}
    for name, metric in metrics.CATALOGUE.items():
        assert metric.name == name and metric.unit in {"Count", "Seconds"} and metric.meaning
        assert metric.dimensions and set(metric.dimensions) <= known
        assert metric.dimensions[0] == metrics.DIM_AGENT  # every Outpost metric is per agent


def test_closed_dimension_values_are_the_real_ones() -> None:
    assert set(metrics.FINAL_STATUSES) == {str(s) for s in TERMINAL}
    assert len(set(metrics.FAILURE_REASONS)) == len(metrics.FAILURE_REASONS)


def test_emit_refuses_a_value_outside_a_closed_dimension(emitted: Emitted) -> None:
    with pytest.raises(ValueError, match="Reason"):
        metrics.emit({metrics.DISPATCH_FAILURES: 1}, Agent="shell", Reason="bad-luck")
    with pytest.raises(ValueError, match="Status"):
        metrics.dispatch_finished("shell", "RUNNING", None)
    assert emitted.documents == []


# -- failures by agent and reason ----------------------------------------------------------


def failures(emitted: Emitted) -> list[dict[str, str]]:
    return emitted.dimensions_of(metrics.DISPATCH_FAILURES)


def by_reconciler(emitted: Emitted) -> list[dict[str, str]]:
    return emitted.dimensions_of(metrics.RECONCILER_FAILURES)


def task_failures(emitted: Emitted) -> list[dict[str, str]]:
    return emitted.dimensions_of(metrics.TASK_FAILURES)


SHELL = {metrics.DIM_AGENT: "shell"}


def reason(value: str) -> dict[str, str]:
    return {**SHELL, metrics.DIM_REASON: value}


def test_a_completed_or_cancelled_dispatch_is_no_failure(world: World, emitted: Emitted) -> None:
    completed_on_a_warm_task(world)
    cancelled(world)
    assert failures(emitted) == [] and task_failures(emitted) == []
    statuses = [d[metrics.DIM_STATUS] for d in emitted.dimensions_of(metrics.DISPATCHES_FINISHED)]
    assert statuses == ["COMPLETED", "CANCELLED"]


def test_a_failure_the_runner_reports_is_an_agent_error(world: World, emitted: Emitted) -> None:
    failed_by_the_agent_after_a_cold_start(world)
    assert failures(emitted) == [reason(metrics.REASON_AGENT_ERROR)]
    assert by_reconciler(emitted) == [] and task_failures(emitted) == []
    [document] = emitted.of(metrics.DISPATCH_FAILURES)
    assert document[metrics.DISPATCH_FAILURES] == 1 and metrics.RECONCILER_FAILURES not in document


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [(failed_by_the_model_api, metrics.REASON_API), (failed_on_the_network, metrics.REASON_NETWORK)],
)
def test_a_failure_the_runner_reports_is_counted_under_its_error_kind(
    world: World, emitted: Emitted, scenario: Callable[[World], None], expected: str
) -> None:
    scenario(world)
    assert failures(emitted) == [reason(expected)]
    assert by_reconciler(emitted) == [] and task_failures(emitted) == []


def test_a_reported_agent_error_kind_is_an_agent_error(world: World, emitted: Emitted) -> None:
    _, job = started(world, warm=False)
    report(world, job, "FAILED", 1, error_kinds.AGENT)
    assert failures(emitted) == [reason(metrics.REASON_AGENT_ERROR)]


@pytest.mark.parametrize("kind", ["quota", 7, ["api"], ""])
def test_refuse_a_report_with_an_unknown_error_kind_and_keep_the_dispatch_running(
    world: World, emitted: Emitted, kind: Any
) -> None:
    _, job = started(world, warm=False)
    reply = world.client.post(
        f"/internal/dispatches/{job['dispatch_id']}/result",
        json={"outcome": "FAILED", "exit_code": 1, "summary": {"error_kind": kind}},
        headers={"Authorization": f"Bearer {job['job_token']}"},
    )
    assert reply.status_code == 422, reply.text
    assert "error_kind" in reply.text
    record = world.stores.dispatches.get(dispatch_id=job["dispatch_id"], tenant_id=None)
    assert record is not None and record.status is Status.RUNNING and record.error is None
    assert failures(emitted) == []


def test_a_timeout_the_runner_reports_is_a_timeout(world: World, emitted: Emitted) -> None:
    timed_out_by_the_runner(world)
    assert failures(emitted) == [reason(metrics.REASON_TIMEOUT)]
    assert by_reconciler(emitted) == []


def test_a_task_killed_for_memory_fails_its_dispatch_as_oom_and_counts_as_a_task_failure(
    world: World, emitted: Emitted
) -> None:
    task_killed_for_memory(world)
    assert failures(emitted) == [reason(metrics.REASON_OOM)]
    assert task_failures(emitted) == [SHELL]


def test_a_task_that_crashed_fails_its_dispatch_as_task_stopped(world: World, emitted: Emitted) -> None:
    task_crashed(world)
    assert failures(emitted) == [reason(metrics.REASON_TASK_STOPPED)]
    assert task_failures(emitted) == [SHELL]


def test_spot_interruptions_are_requeues_until_the_last_one_fails_as_interrupted(
    world: World, emitted: Emitted
) -> None:
    interrupted_until_the_attempts_ran_out(world)
    attempts = world.engine.config.max_attempts
    assert len(emitted.of(metrics.DISPATCHES_REQUEUED)) == attempts - 1
    assert failures(emitted) == [reason(metrics.REASON_INTERRUPTED)]
    assert task_failures(emitted) == []  # AWS took the capacity back: no fault of the task


def test_a_task_stopped_by_outpost_or_exiting_cleanly_is_no_task_failure(
    world: World, emitted: Emitted
) -> None:
    stopping, _ = started(world, warm=True)
    world.engine.task_control.stop_task(stopping.task_id, reason="cancelled by test")
    clean, job = started(world, warm=True)
    report(world, job, "COMPLETED", 0)
    events = [
        stopped_event(stopping, 5, stopCode="UserInitiated", containers=[{"exitCode": 143}]),
        stopped_event(clean, 5, stopCode="EssentialContainerExited", containers=[{"exitCode": 0}]),
    ]
    assert world.engine.tracker.handle_batch(events) == 2
    assert task_failures(emitted) == []


def test_the_reconcilers_failures_are_counted_apart_by_reason(world: World, emitted: Emitted) -> None:
    timed_out_by_the_reconciler(world)
    never_started(world)
    task_lost_by_the_runtime(world)
    expected = [
        reason(metrics.REASON_TIMEOUT),
        reason(metrics.REASON_NOT_STARTED),
        reason(metrics.REASON_TASK_LOST),
    ]
    assert by_reconciler(emitted) == expected
    assert failures(emitted) == expected
    assert task_failures(emitted) == [SHELL]  # the lost task; the timed-out one Outpost stopped


def test_a_lost_task_without_a_job_counts_as_a_task_failure(world: World, emitted: Emitted) -> None:
    task, _ = world.new_task()
    world.tasks.set_launched(
        task, runtime_ref=f"arn:aws:ecs:us-east-1:1:task/outpost/{task.task_id}", capacity="X"
    )
    age_task(world, task.task_id)
    counts = world.engine.reconciler.tick()
    assert counts is not None and counts["stopped"] == 1
    assert task_failures(emitted) == [SHELL] and failures(emitted) == []


def test_a_task_outpost_was_stopping_is_no_task_failure_when_it_vanishes(
    world: World, emitted: Emitted
) -> None:
    task, _ = world.new_task()
    world.tasks.set_launched(
        task, runtime_ref=f"arn:aws:ecs:us-east-1:1:task/outpost/{task.task_id}", capacity="X"
    )
    world.engine.task_control.stop_task(task.task_id, reason="scaled down")  # its stop event never came
    age_task(world, task.task_id)
    counts = world.engine.reconciler.tick()
    assert counts is not None and counts["stopped"] == 1
    assert task_failures(emitted) == []


def test_a_dead_lettered_dispatch_is_counted_as_such_and_as_a_reconciler_failure(
    world: World, emitted: Emitted
) -> None:
    dead_lettered(world)
    assert emitted.dimensions_of(metrics.DISPATCHES_DEAD_LETTERED) == [SHELL]
    assert failures(emitted) == by_reconciler(emitted) == [reason(metrics.REASON_DEAD_LETTERED)]


# -- claim failures ------------------------------------------------------------------------


def claim_failures(emitted: Emitted) -> list[dict[str, str]]:
    return emitted.dimensions_of(metrics.CLAIM_FAILURES)


def test_a_claim_with_a_spent_token_is_a_claim_failure(world: World, emitted: Emitted) -> None:
    claim_with_a_spent_token(world)
    assert claim_failures(emitted) == [SHELL]


def test_a_claim_past_its_deadline_is_a_claim_failure(world: World, emitted: Emitted) -> None:
    claim_past_its_deadline(world)
    assert claim_failures(emitted) == [SHELL]


def test_a_claim_that_waits_or_succeeds_is_no_claim_failure_nor_is_an_unknown_token(
    world: World, emitted: Emitted
) -> None:
    task, token = world.new_task()
    assert world.claim(token, task.task_id).status_code == 204  # nothing queued
    started(world, warm=True)
    assert world.claim("t-unknown.secret", "t-unknown").status_code == 401  # names no agent
    assert claim_failures(emitted) == []


# -- warm pool and concurrency -------------------------------------------------------------


def test_the_scaler_reports_pool_size_idle_tasks_and_running_jobs_each_pass(
    world: World, emitted: Emitted
) -> None:
    scaler_passes(world)
    shell = [d for d in emitted.of(metrics.WARM_POOL_SIZE) if d[metrics.DIM_AGENT] == "shell"]
    gauges = [
        (d[metrics.WARM_POOL_SIZE], d[metrics.WARM_POOL_IDLE], d[metrics.DISPATCHES_RUNNING]) for d in shell
    ]
    assert gauges == [(1, 0, 1), (1, 1, 1)]  # before the launch; then the launched task waits
    assert {d[metrics.DIM_AGENT] for d in emitted.of(metrics.WARM_POOL_SIZE)} == set(
        world.engine.scaler.warm_pool
    )
    assert emitted.dimensions_of(metrics.TASKS_LAUNCHED) == [SHELL]


def test_a_refused_launch_is_a_launch_failure(world: World, emitted: Emitted) -> None:
    launch_refused(world)
    assert emitted.dimensions_of(metrics.LAUNCH_FAILURES) == [SHELL]
