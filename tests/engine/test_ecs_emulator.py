"""The engine on the ECS runtime against an ECS emulator: real RunTask, StopTask, ListTasks and
DescribeTasks calls over HTTP to ministack, with the synthesized shell task definition, a
FARGATE/FARGATE_SPOT cluster, and DynamoDB, SQS and S3 in the moto server.

tests/emulators/ecs.py holds ministack to the ECS API reference (filter rules, limits, client
token idempotency) and supplies what it lacks (PROVISIONING, task-state events, Spot
interruptions). Task-state events go through the task-events queue, as EventBridge delivers them.
Throttling is injected into the ECS client by botocore's before-call hook.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from fastapi.testclient import TestClient

from agents.infra_prices import dispatch_infra_cost_usd
from agents.registry import AGENTS
from control_plane.bootstrap import ensure_resources
from control_plane.engine import tasks as t
from control_plane.engine.app import create_engine_app
from control_plane.engine.config import EngineSettings
from control_plane.engine.service import Engine, ecs_config
from control_plane.lifecycle import Status
from control_plane.metrics import LAUNCH_FAILURES
from control_plane.runtime.base import LaunchedTask, LaunchError, LaunchRequest
from control_plane.runtime.ecs import EcsRuntime, ecs_client, task_env
from control_plane.settings import Settings
from control_plane.store import Actor
from control_plane.store.codec import encode, iso, now
from tests.emulators.ecs import DocumentedEcs
from tests.emulators.task_definition import register_input, synthesized_properties
from tests.engine.conftest import ADMIN_KEY, World

SUBNETS = ("subnet-0a1b2c3d",)
DEPLOYED = ("shell", "claude")  # a stage with fewer agents than the registry
SECURITY_GROUPS = {"shell": "sg-0shell", "claude": "sg-0claude"}  # each agent its own


@pytest.fixture(scope="module")
def shell_task_definition() -> dict[str, Any]:
    return synthesized_properties("shell")


class EcsWorld(World):
    ecs: DocumentedEcs

    def arns(self, status: str = "RUNNING") -> list[str]:
        return self.ecs.client.list_tasks(cluster=self.settings.cluster_arn, desiredStatus=status)["taskArns"]

    def describe(self, arn: str) -> dict[str, Any]:
        [task] = self.ecs.client.describe_tasks(cluster=self.settings.cluster_arn, tasks=[arn])["tasks"]
        return task

    def claim_from(self, arn: str):
        """What the task's runner does first: claim with the token from its RunTask overrides."""
        env = task_env(self.describe(arn))
        return self.claim(env["OUTPOST_CLAIM_TOKEN"], env["OUTPOST_TASK_ID"])

    def age_claim(self, arn: str, seconds: float) -> None:
        """The task's claim as time would have left it ``seconds`` later."""
        task = self.tasks.by_ref(arn)
        assert task is not None
        self.clients.dynamodb.update_item(
            TableName=self.settings.dispatches_table,
            Key={"dispatch_id": encode(f"task#{task.task_id}")},
            UpdateExpression="SET claimed_at = :c, created_at = :c",
            ExpressionAttributeValues={":c": encode(iso(now() - timedelta(seconds=seconds)))},
        )

    def deliver_events(self) -> int:
        """The event consumer's pass over the task-events queue."""
        delivered = 0
        while (count := self.engine.consume_events(wait_s=0)) > 0:
            delivered += count
        return delivered


@pytest.fixture
def ecs_world(moto_endpoint: str, ministack_endpoint: str, shell_task_definition) -> EcsWorld:
    return make_ecs_world(moto_endpoint, ministack_endpoint, shell_task_definition)


def make_ecs_world(moto_endpoint: str, ministack_endpoint: str, properties: dict[str, Any]) -> EcsWorld:
    prefix = f"x{uuid.uuid4().hex[:10]}"
    raw = ecs_client("us-east-1", ministack_endpoint)
    cluster = raw.create_cluster(
        clusterName=prefix,
        capacityProviders=["FARGATE", "FARGATE_SPOT"],
        defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}],
    )["cluster"]["clusterArn"]
    # every deployed agent gets the shell's synthesized definition under its own family
    definitions = {
        agent: raw.register_task_definition(**register_input(properties, f"{prefix}-{agent}"))[
            "taskDefinition"
        ]["taskDefinitionArn"]
        for agent in DEPLOYED
    }
    resources = ensure_resources(endpoint_url=moto_endpoint, prefix=prefix, agents=DEPLOYED)
    settings = Settings(
        env="local",
        aws_endpoint_url=moto_endpoint,
        admin_key=ADMIN_KEY,
        dispatch_queue_urls=resources.dispatch_queue_urls,
        artifacts_bucket=resources.artifacts_bucket,
        task_events_queue_url=resources.task_events_queue_url,
        internal_url="http://outpost-control-plane.outpost.internal:8080",
        runtime="ecs",
        cluster_arn=cluster,
        task_definitions=definitions,
        subnets=list(SUBNETS),
        agent_security_groups=SECURITY_GROUPS,
        **resources.tables,
    )
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    ecs = DocumentedEcs(
        raw,
        sink=lambda event: sqs.send_message(
            QueueUrl=resources.task_events_queue_url, MessageBody=json.dumps(event)
        ),
    )
    # the dev stage's warm pools and every production interval; the loops stay off (tests drive
    # each pass), and a claim's long poll is short since every claim here finds its job queued
    options = EngineSettings(env="dev", engine_enabled=False, claim_long_poll_s=1.0)
    # the settings' RunTask configuration, as the engine builds it (build_runtime)
    runtime = EcsRuntime(client=ecs, config=ecs_config(settings, options))
    app = create_engine_app(settings, engine_settings=options, runtime=runtime)
    engine: Engine = app.state.engine
    _, api_key = engine.stores.tenants.create(
        name="ecs-tests", max_running=50, max_queued=50, allowed_agents=None, actor=Actor.system("test")
    )
    tenant = engine.stores.tenants.by_api_key(api_key=api_key)
    assert tenant is not None
    world = EcsWorld(resources, settings, engine, TestClient(app), tenant.tenant_id, api_key, runtime)
    world.ecs = ecs
    return world


def throttle(client: Any, operation: str, times: int = 1) -> list[int]:
    """Failure injection: the next ``times`` calls of ``operation`` answer ThrottlingException."""
    left = [times]

    def answer(**_: Any):
        if left[0] <= 0:
            return None
        left[0] -= 1
        error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
        return AWSResponse("https://ecs", 400, {}, None), {
            **error,
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }

    client.meta.events.register(f"before-call.ecs.{operation}", answer)
    return left


def run_foreign(world: EcsWorld, started_by: str = "outpost") -> str:
    """A task nobody recorded (a launch whose record was lost, or someone else's)."""
    return world.ecs.client.run_task(
        cluster=world.settings.cluster_arn,
        taskDefinition=world.settings.task_definitions["shell"],
        capacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}],
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": list(SUBNETS), "assignPublicIp": "DISABLED"}
        },
        startedBy=started_by,
        group="outpost:shell",
    )["tasks"][0]["taskArn"]


# -- the happy paths ---------------------------------------------------------------------------


def test_the_warm_pool_is_launched_to_size_on_fargate_spot(ecs_world: EcsWorld):
    ecs_world.engine.scaler.warm_pool["shell"] = 2
    assert ecs_world.engine.scaler.tick() == {"shell": 2, "claude": 0}
    arns = ecs_world.arns()
    assert len(arns) == 2
    for arn in arns:
        task = ecs_world.describe(arn)
        assert task["capacityProviderName"] == "FARGATE_SPOT" and task["group"] == "outpost:shell"
        assert task["taskDefinitionArn"] == ecs_world.settings.task_definitions["shell"]
        assert task["enableExecuteCommand"] is False
    records = ecs_world.tasks.live(["shell"])
    assert sorted(r.runtime_ref for r in records) == sorted(arns)
    assert all(r.state == t.UNCLAIMED and r.capacity == "FARGATE_SPOT" for r in records)
    # the pool is full: the next pass launches nothing, and the listing sees both tasks
    assert ecs_world.engine.scaler.tick() == {"shell": 0, "claude": 0}
    assert sorted(task.runtime_ref for task in ecs_world.runtime.list_tasks()) == sorted(arns)


def test_each_agents_tasks_start_in_that_agents_own_security_group(ecs_world: EcsWorld):
    """The group is the per-agent wall (stacks/fleet.py): a claude task in shell's group would
    reach shell's egress proxy listener and its allowlist."""
    sent: list[dict[str, Any]] = []
    ecs_world.ecs.client.meta.events.register_first(
        "before-parameter-build.ecs.RunTask", lambda params, **_: sent.append(params)
    )
    ecs_world.engine.scaler.warm_pool.update({"shell": 1, "claude": 1})
    assert ecs_world.engine.scaler.tick() == {"shell": 1, "claude": 1}
    networks = {params["group"]: params["networkConfiguration"]["awsvpcConfiguration"] for params in sent}
    assert networks == {
        f"outpost:{agent}": {
            "subnets": list(SUBNETS),
            "securityGroups": [ecs_world.settings.agent_security_groups[agent]],
            "assignPublicIp": "DISABLED",
        }
        for agent in DEPLOYED
    }
    assert ecs_world.settings.agent_security_groups == SECURITY_GROUPS
    # and the tasks the emulator started are those two, one per agent
    assert sorted(ecs_world.describe(arn)["group"] for arn in ecs_world.arns()) == [
        "outpost:claude",
        "outpost:shell",
    ]


def test_a_stage_deploying_only_shell_and_claude_never_launches_for_other_agents(ecs_world: EcsWorld):
    # the registry sizes the dev pools; the override asks for agents this stage does not deploy
    scaler = ecs_world.engine.scaler
    assert set(scaler.warm_pool) == set(DEPLOYED)
    engine = Engine(
        settings=ecs_world.settings,
        clients=ecs_world.clients,
        stores=ecs_world.stores,
        engine_settings=EngineSettings(env="dev", warm_pool={"codex": 2, "gemini": 1, "claude": 1}),
        runtime=ecs_world.runtime,
    )
    assert engine.scaler.tick() == {"shell": 1, "claude": 1}
    assert engine.scaler.tick() == {"shell": 0, "claude": 0}
    assert engine.scaler.metrics.snapshot().get("codex", {}).get(LAUNCH_FAILURES, 0) == 0
    groups = sorted(ecs_world.describe(arn)["group"] for arn in ecs_world.arns())
    assert groups == ["outpost:claude", "outpost:shell"]


def test_an_orphan_task_is_stopped_and_a_task_someone_else_started_is_left_alone(ecs_world: EcsWorld):
    orphan = run_foreign(ecs_world)
    service_task = run_foreign(ecs_world, started_by="ecs-svc/1234567890")
    counts = ecs_world.engine.reconciler.tick()
    assert counts is not None and counts["orphans"] == 1
    assert ecs_world.describe(orphan)["lastStatus"] == "STOPPED"
    assert ecs_world.describe(orphan)["stoppedReason"] == "Outpost: orphan task"
    assert ecs_world.describe(service_task)["lastStatus"] == "RUNNING"


def test_a_vanished_task_fails_its_dispatch_after_the_launch_grace(ecs_world: EcsWorld):
    ecs_world.engine.scaler.warm_pool["shell"] = 1
    ecs_world.engine.scaler.tick()
    [arn] = ecs_world.arns()
    ecs_world.ecs.start(arn)
    job = ecs_world.dispatch("echo on fargate")
    assert ecs_world.claim_from(arn).status_code == 200
    assert ecs_world.get(job.dispatch_id).status is Status.RUNNING

    ecs_world.ecs.vanish(arn)  # stopped, and no event reaches Outpost
    grace = ecs_world.engine.reconciler.launch_grace_s
    assert grace == EngineSettings().launch_grace_s == 120.0  # the production value
    ecs_world.age_claim(arn, grace - 5)
    assert ecs_world.engine.reconciler.tick()["vanished"] == 0  # type: ignore[index]
    assert ecs_world.get(job.dispatch_id).status is Status.RUNNING
    ecs_world.age_claim(arn, grace + 5)
    assert ecs_world.engine.reconciler.tick()["vanished"] == 1  # type: ignore[index]
    record = ecs_world.get(job.dispatch_id)
    assert record.status is Status.FAILED and "gone" in (record.error or "")


def test_a_finished_dispatch_shows_its_fargate_tasks_cost(ecs_world: EcsWorld, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    ecs_world.engine.scaler.warm_pool["shell"] = 1
    ecs_world.engine.scaler.tick()
    [arn] = ecs_world.arns()
    ecs_world.ecs.start(arn)
    job = ecs_world.dispatch("echo on spot")
    claimed = ecs_world.claim_from(arn)
    assert claimed.status_code == 200
    tenant = {"Authorization": f"Bearer {ecs_world.api_key}"}
    running = ecs_world.client.get(f"/dispatch/{job.dispatch_id}", headers=tenant).json()
    assert running["infra_cost_usd"] is None  # priced once it ends
    reported = ecs_world.client.post(
        f"/internal/dispatches/{job.dispatch_id}/result",
        json={"outcome": "COMPLETED", "exit_code": 0},
        headers={"Authorization": f"Bearer {claimed.json()['job_token']}"},
    )
    assert reported.status_code == 200, reported.text
    ended = ecs_world.client.get(f"/dispatch/{job.dispatch_id}", headers=tenant).json()
    # a second's job is billed Fargate's minute: the shell agent's size on Spot in us-east-1
    spot_minute = dispatch_infra_cost_usd(AGENTS["shell"], capacity="FARGATE_SPOT", seconds=60)
    assert ended["infra_cost_usd"] == round(spot_minute, 6) > 0
    assert ended["cost_usd"] is None  # the model's part: the shell agent calls none


def test_a_spot_interruption_requeues_the_dispatch(ecs_world: EcsWorld):
    ecs_world.engine.scaler.warm_pool["shell"] = 1
    ecs_world.engine.scaler.tick()
    [arn] = ecs_world.arns()
    ecs_world.ecs.start(arn)
    job = ecs_world.dispatch("echo on spot")
    assert ecs_world.claim_from(arn).status_code == 200
    ecs_world.deliver_events()

    # Fargate reclaims the capacity: the task runs out its stop timeout, and is still there
    ecs_world.ecs.interrupt(arn)
    ecs_world.deliver_events()
    ecs_world.age_claim(arn, ecs_world.engine.reconciler.launch_grace_s + 5)
    assert ecs_world.engine.reconciler.tick()["vanished"] == 0  # type: ignore[index]
    assert ecs_world.get(job.dispatch_id).status is Status.RUNNING

    ecs_world.ecs.finish_interruption(arn)
    assert ecs_world.deliver_events() == 1
    record = ecs_world.get(job.dispatch_id)
    assert record.status is Status.PENDING and record.attempt == 2
    # the next pass launches a task for the second attempt (its own client token)
    ecs_world.engine.scaler.tick()
    launched_for = {task.launched_for for task in ecs_world.tasks.live(["shell"])}
    assert f"{job.dispatch_id}#2" in launched_for


# -- documented ECS rules and failures (issue 8, A8 and A12) -----------------------------------


def test_listing_keeps_to_the_documented_filter_rules_and_sees_stopping_tasks(ecs_world: EcsWorld):
    ecs_world.engine.scaler.warm_pool["shell"] = 2
    ecs_world.engine.scaler.tick()
    running, stopping = ecs_world.arns()
    ecs_world.ecs.interrupt(stopping)  # desired STOPPED, still running its stop timeout
    run_foreign(ecs_world, started_by="ecs-svc/1234567890")
    listed = {task.runtime_ref: task for task in ecs_world.runtime.list_tasks()}
    assert set(listed) == {running, stopping}
    assert listed[stopping].last_status == "DEACTIVATING" and listed[stopping].agent == "shell"


def test_the_reconciler_lists_tasks_once_per_pass(ecs_world: EcsWorld):
    ecs_world.engine.scaler.warm_pool["shell"] = 2
    ecs_world.engine.scaler.tick()
    ecs_world.ecs.calls.clear()
    ecs_world.engine.reconciler.tick()
    # one listing: startedBy alone, then desiredStatus=STOPPED alone; one DescribeTasks
    assert ecs_world.ecs.calls == {"list_tasks": 2, "describe_tasks": 1}


def test_throttled_calls_are_retried_and_the_pass_still_runs(ecs_world: EcsWorld):
    orphan = run_foreign(ecs_world)
    left = [throttle(ecs_world.ecs.client, op, 2) for op in ("ListTasks", "DescribeTasks", "StopTask")]
    counts = ecs_world.engine.reconciler.tick()
    assert [n[0] for n in left] == [0, 0, 0]  # every injected throttle was met, and retried
    assert counts is not None and counts["orphans"] == 1
    assert ecs_world.describe(orphan)["lastStatus"] == "STOPPED"


def test_launch_returns_one_result_per_request_when_the_cleanup_stop_fails(ecs_world: EcsWorld):
    client = ecs_world.ecs.client
    reported = [False]

    def failures_once(parsed: dict[str, Any], **_: Any) -> None:
        if not reported[0]:  # a 200 that started a task and reports a failure
            reported[0] = True
            parsed["failures"] = [{"arn": parsed["tasks"][0]["taskArn"], "reason": "AGENT"}]

    def refuse_stop(**_: Any):
        error = {"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}
        return AWSResponse("https://ecs", 400, {}, None), {
            **error,
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }

    client.meta.events.register("after-call.ecs.RunTask", failures_once)
    client.meta.events.register("before-call.ecs.StopTask", refuse_stop)
    requests = [
        LaunchRequest(
            agent="shell", task_id=f"t-{n}", client_token=f"tok-{uuid.uuid4().hex}", env={}, spot=False
        )
        for n in range(2)
    ]
    results = ecs_world.runtime.launch(requests)
    assert len(results) == 2
    assert isinstance(results[0], LaunchError) and "AGENT" in str(results[0])
    assert isinstance(results[1], LaunchedTask)
    # the half-started task is left to the reconciler, which stops it as an orphan
    client.meta.events.unregister("before-call.ecs.StopTask", refuse_stop)
    assert ecs_world.engine.reconciler.tick()["orphans"] == 2  # type: ignore[index]


def test_the_emulator_layer_refuses_what_ecs_refuses(ministack_endpoint: str, shell_task_definition):
    raw = ecs_client("us-east-1", ministack_endpoint)
    name = f"rules{uuid.uuid4().hex[:8]}"
    cluster = raw.create_cluster(clusterName=name, capacityProviders=["FARGATE"])["cluster"]["clusterArn"]
    definition = raw.register_task_definition(**register_input(shell_task_definition, name))
    ecs = DocumentedEcs(raw)
    refused = [
        lambda: ecs.list_tasks(cluster=cluster, startedBy="outpost", desiredStatus="STOPPED"),
        lambda: ecs.list_tasks(cluster=cluster, maxResults=101),
        lambda: ecs.describe_tasks(cluster=cluster, tasks=[f"t{n}" for n in range(101)]),
        lambda: ecs.stop_task(cluster=cluster, task="t", reason="x" * 256),
        lambda: ecs.run_task(cluster=cluster, taskDefinition="d", count=11),
        lambda: ecs.run_task(cluster=cluster, taskDefinition="d", clientToken="x" * 65),
    ]
    for call in refused:
        with pytest.raises(ecs.client.exceptions.ClientError) as error:
            call()
        assert error.value.response["Error"]["Code"] == "InvalidParameterException"
    # clientToken: the same request answers the first reply; another request is refused
    params = {
        "cluster": cluster,
        "taskDefinition": definition["taskDefinition"]["taskDefinitionArn"],
        "clientToken": "same-token",
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": list(SUBNETS)}},
    }
    first = ecs.run_task(**params)["tasks"][0]["taskArn"]
    assert ecs.run_task(**params)["tasks"][0]["taskArn"] == first
    assert raw.list_tasks(cluster=cluster)["taskArns"] == [first]
    with pytest.raises(ecs.client.exceptions.ClientError):
        ecs.run_task(**{**params, "startedBy": "someone-else"})


def test_a_runtask_whose_answer_is_lost_starts_one_task(ecs_world: EcsWorld):
    ecs_world.ecs.lose_run_task_answers = 1  # ECS starts the task; its answer never arrives
    assert ecs_world.engine.scaler.tick() == {"shell": 1, "claude": 0}
    [record] = ecs_world.tasks.live(["shell"])
    assert ecs_world.arns() == [record.runtime_ref]  # the retry, same client token, found it
    assert ecs_world.ecs.calls["run_task"] == 2
