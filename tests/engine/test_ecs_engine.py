"""The engine on the ECS runtime: the scaler's RunTask requests (Stubber, validated against the
ECS service model) with the records in the emulator, and task-state events found by ARN."""

from __future__ import annotations

import boto3
from botocore.stub import Stubber

from control_plane.engine import tasks as t
from control_plane.engine.config import EngineSettings
from control_plane.engine.scaler import Scaler
from control_plane.lifecycle import Status
from control_plane.runtime.base import client_token
from control_plane.runtime.ecs import Backoff, EcsConfig, EcsRuntime
from tests.engine.conftest import World

CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/outpost"
ARN = "arn:aws:ecs:us-east-1:123456789012:task/outpost/0a1b2c"


def test_a_queued_job_launches_an_ecs_task_whose_events_reach_its_dispatch(world: World):
    job = world.dispatch("echo on fargate")
    ecs = boto3.client("ecs", region_name="us-east-1")
    sent: list[dict] = []
    ecs.meta.events.register_first(
        "before-parameter-build.ecs.RunTask", lambda params, **_: sent.append(params)
    )
    runtime = EcsRuntime(
        client=ecs,
        config=EcsConfig(
            cluster=CLUSTER,
            task_definitions={"shell": "outpost-shell"},
            subnets=("subnet-0a",),
            security_groups={"shell": "sg-shell"},
        ),
        backoff=Backoff(rng=lambda: 0.0),
        sleep=lambda _: None,
    )
    scaler = Scaler(
        client=world.clients.dynamodb,
        table=world.settings.dispatches_table,
        tasks=world.tasks,
        runtime=runtime,
        lease=t.Lease(
            client=world.clients.dynamodb,
            table=world.settings.dispatches_table,
            name="scaler",
            owner="a",
            duration_s=EngineSettings().lease_s,  # production value: a slow machine keeps the lead
        ),
        warm_pool={"shell": 0},
        spot={"shell": True},
        runner_env=lambda agent: {"OUTPOST_CONTROL_PLANE_URL": "https://cp.internal:8080"},
    )
    with Stubber(ecs) as stubber:
        stubber.add_response(
            "run_task",
            {"tasks": [], "failures": [{"arn": CLUSTER, "reason": "Capacity is unavailable at this time."}]},
        )
        stubber.add_response(
            "run_task", {"tasks": [{"taskArn": ARN, "lastStatus": "PROVISIONING"}], "failures": []}
        )
        assert scaler.tick() == {"shell": 1}
        stubber.assert_no_pending_responses()

    spot_call, fallback = sent
    token = client_token(job.dispatch_id, 1)
    assert spot_call["clientToken"] == token and len(token) <= 64
    assert spot_call["capacityProviderStrategy"] == [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]
    assert fallback["capacityProviderStrategy"] == [{"capacityProvider": "FARGATE", "weight": 1}]
    env = {e["name"]: e["value"] for e in fallback["overrides"]["containerOverrides"][0]["environment"]}
    [task] = world.tasks.live(["shell"])
    assert (task.runtime_ref, task.capacity, task.client_token) == (ARN, "FARGATE", token)
    assert env["OUTPOST_TASK_ID"] == task.task_id and env["OUTPOST_AGENT"] == "shell"
    assert env["OUTPOST_CONTROL_PLANE_URL"] == "https://cp.internal:8080"

    # the task's runner claims with the token from its overrides; the dispatch runs on it
    assert world.claim(env["OUTPOST_CLAIM_TOKEN"], env["OUTPOST_TASK_ID"]).status_code == 200
    assert world.get(job.dispatch_id).task_id == task.task_id
    # ECS reports the task stopped (by ARN); the dispatch fails for want of a report
    stopped = {"taskArn": ARN, "version": 4, "lastStatus": "STOPPED", "stoppedReason": "OutOfMemoryError"}
    assert world.engine.tracker.handle_batch([stopped]) == 1
    record = world.get(job.dispatch_id)
    assert record.status is Status.FAILED and "OutOfMemoryError" in record.error
