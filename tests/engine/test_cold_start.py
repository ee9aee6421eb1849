"""The cold-start measurement (control_plane/ops/cold_start.py) against the ECS emulator.

The stage is a Dev-Fleet stack in ministack's CloudFormation with what the script reads: a
cluster, the shell agent's task definition (awslogs), and a control-plane service whose
environment names them. Fargate's part is played here: each task the script starts runs the
real runner (agents.runner) with the task's environment overrides, against a real `outpost dev`
control plane, and its output reaches the task's CloudWatch log stream line by line, as the
awslogs driver sends it; when the runner exits, the task stops.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from control_plane.ops.cold_start import PHASES, STARTED_BY, Meter, discover, summarize
from tests.e2e.helpers import Dev, start_dev, stop_dev, wait_for

ROOT = Path(__file__).resolve().parents[2]
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
LOG_GROUP = "outpost-dev-agent-shell"


def stage_template(control_plane_url: str) -> dict[str, Any]:
    """The parts of the Fleet stack (stacks/fleet.py) the script reads, with its variable names."""
    awslogs = {
        "awslogs-group": {"Ref": "ShellLogs"},
        "awslogs-region": "us-east-1",
        "awslogs-stream-prefix": "shell",
    }
    fargate = {"NetworkMode": "awsvpc", "RequiresCompatibilities": ["FARGATE"], "Cpu": "256", "Memory": "512"}
    return {
        "Resources": {
            "Cluster": {"Type": "AWS::ECS::Cluster", "Properties": {}},
            "ShellLogs": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": LOG_GROUP}},
            "ShellTask": {
                "Type": "AWS::ECS::TaskDefinition",
                "Properties": {
                    **fargate,
                    "Family": "outpost-dev-shell",
                    "ContainerDefinitions": [
                        {
                            "Name": "agent",
                            "Image": "outpost-shell",
                            "LogConfiguration": {"LogDriver": "awslogs", "Options": awslogs},
                        }
                    ],
                },
            },
            "ControlPlaneTask": {
                "Type": "AWS::ECS::TaskDefinition",
                "Properties": {
                    **fargate,
                    "Family": "outpost-dev-control-plane",
                    "ContainerDefinitions": [
                        {
                            "Name": "api",
                            "Image": "outpost-control-plane",
                            "Environment": [
                                {"Name": "OUTPOST_RUNTIME", "Value": "ecs"},
                                {"Name": "OUTPOST_CLUSTER_ARN", "Value": {"Fn::GetAtt": ["Cluster", "Arn"]}},
                                {
                                    "Name": "OUTPOST_TASK_DEFINITIONS",
                                    "Value": {"Fn::Sub": '{"shell":"${ShellTask}"}'},
                                },
                                {"Name": "OUTPOST_SUBNETS", "Value": '["subnet-0a","subnet-0b"]'},
                                {"Name": "OUTPOST_AGENT_SECURITY_GROUPS", "Value": '{"shell":"sg-shell"}'},
                                {"Name": "OUTPOST_INTERNAL_URL", "Value": control_plane_url},
                            ],
                        }
                    ],
                },
            },
            "ControlPlane": {
                "Type": "AWS::ECS::Service",
                "Properties": {
                    "Cluster": {"Ref": "Cluster"},
                    "TaskDefinition": {"Ref": "ControlPlaneTask"},
                    "DesiredCount": 0,
                    "LaunchType": "FARGATE",
                },
            },
        }
    }


class StandInFargate:
    """Runs the runner of each task the script starts, as the task's one container."""

    def __init__(self, endpoint: str, workspace: Path, *, container: str = "runner") -> None:
        session = boto3.Session(**{k.lower(): v for k, v in CREDENTIALS.items() if k != "AWS_DEFAULT_REGION"})
        self.ecs = session.client("ecs", region_name="us-east-1", endpoint_url=endpoint)
        self.logs = session.client("logs", region_name="us-east-1", endpoint_url=endpoint)
        self.workspace = workspace
        # "runner"; "unpullable": the task stops, nothing runs; "silent": it runs, says nothing
        self.container = container
        self.seen: dict[str, dict[str, Any]] = {}  # task ARN -> its description at start
        self.exit_codes: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def __enter__(self) -> StandInFargate:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    def loop(self) -> None:
        while not self.stop.is_set():
            for cluster in self.ecs.list_clusters()["clusterArns"]:
                for arn in self.ecs.list_tasks(cluster=cluster, startedBy=STARTED_BY)["taskArns"]:
                    if arn not in self.seen:
                        [task] = self.ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"]
                        self.seen[arn] = task
                        self.run_container(cluster, task)
            self.stop.wait(0.05)

    def run_container(self, cluster: str, task: dict[str, Any]) -> None:
        if self.container == "silent":
            return
        if self.container == "unpullable":
            reason = "CannotPullContainerError: pull image manifest has been retried 5 time(s)"
            self.ecs.stop_task(cluster=cluster, task=task["taskArn"], reason=reason)
            return
        [override] = task["overrides"]["containerOverrides"]
        env = {e["name"]: e["value"] for e in override["environment"]}
        # the workspace volume is mounted where OUTPOST_WORKSPACE says; here, a directory
        env["OUTPOST_WORKSPACE"] = str(self.workspace)
        stream = f"shell/agent/{task['taskArn'].rsplit('/', 1)[1]}"
        self.logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        runner = subprocess.Popen(
            [sys.executable, "-m", "agents.runner"],
            env={"PATH": os.environ["PATH"], **env},
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert runner.stderr is not None
        for line in runner.stderr:
            event = {"timestamp": int(time.time() * 1000), "message": line.rstrip("\n")}
            self.logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=[event])
        self.exit_codes[task["taskArn"]] = runner.wait()
        self.ecs.stop_task(cluster=cluster, task=task["taskArn"], reason="Essential container in task exited")


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    dev = start_dev(tmp_path_factory.mktemp("cold-start") / "state")
    try:
        yield dev
    finally:
        stop_dev(dev)


@pytest.fixture(scope="module")
def stage(ministack_endpoint: str, control_plane: Dev) -> str:
    """The Dev stage's Fleet stack in the emulator; its control plane is `control_plane`."""
    cloudformation = boto3.client(
        "cloudformation", region_name="us-east-1", endpoint_url=ministack_endpoint, **_keys()
    )
    cloudformation.create_stack(
        StackName="Dev-Fleet", TemplateBody=json.dumps(stage_template(control_plane.url))
    )
    wait_for(
        lambda: (
            cloudformation.describe_stacks(StackName="Dev-Fleet")["Stacks"][0]["StackStatus"]
            == "CREATE_COMPLETE"
        ),
        timeout=30,
        what="the Dev-Fleet stack",
    )
    return ministack_endpoint


def test_cold_starts_are_measured_per_phase_and_every_task_is_stopped(
    stage: str, ministack_endpoint: str, control_plane: Dev, tmp_path: Path
):
    output = tmp_path / "cold-start.json"
    with StandInFargate(ministack_endpoint, tmp_path) as fargate:
        measured = subprocess.run(
            [
                sys.executable, "-m", "control_plane.ops.cold_start", "--env", "dev", "--agent", "shell",
                "--iterations", "3", "--output", str(output), "--poll-interval", "0.2",
                "--endpoint-url", ministack_endpoint,
            ],
            env={**os.environ, **CREDENTIALS}, cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert measured.returncode == 0, measured.stderr

    # each task: the scaler's RunTask, under the measurement's own startedBy, and a runner that
    # reached the stage's control plane and was refused there, having taken no job
    assert len(fargate.seen) == 3 and set(fargate.exit_codes.values()) == {3}  # EXIT_CLAIM_REFUSED
    for task in fargate.seen.values():
        [override] = task["overrides"]["containerOverrides"]
        env = {e["name"]: e["value"] for e in override["environment"]}
        assert env["OUTPOST_CONTROL_PLANE_URL"] == control_plane.url and env["OUTPOST_AGENT"] == "shell"
        assert task["startedBy"] == STARTED_BY and task["capacityProviderName"] == "FARGATE"
        assert task["taskDefinitionArn"].split("/")[-1].startswith("outpost-dev-shell:")
    with control_plane.client() as client:
        assert client.get("/dispatches").json()["items"] == []
    cluster = next(iter(fargate.seen.values()))["clusterArn"]
    assert fargate.ecs.list_tasks(cluster=cluster, startedBy=STARTED_BY)["taskArns"] == []

    report = json.loads(output.read_text())
    assert report["env"] == "dev" and report["cluster"] == cluster and report["capacity"] == "FARGATE"
    assert set(report["phases"]) == set(PHASES)
    shell = report["agents"]["shell"]
    assert (shell["iterations"], shell["failed"]) == (3, 0)
    assert set(shell["phases"]) == set(PHASES)
    for phase, figures in shell["phases"].items():
        assert figures["count"] == 3, phase
        assert 0 <= figures["min"] <= figures["median"] <= figures["max"], phase
        assert figures["min"] <= figures["avg"] <= figures["max"], phase
    assert len(shell["runs"]) == 3
    for run in shell["runs"]:
        assert run["error"] is None and run["task_arn"] in fargate.seen
        assert 0 <= run["pulled_s"] <= run["running_s"] <= run["ready_s"] < 60
    # a runner needs a moment to start and ask: ready comes after RUNNING, never with it
    assert shell["phases"]["ready"]["min"] > 0

    other = subprocess.run(
        [
            sys.executable, "-m", "control_plane.ops.cold_start", "--env", "dev", "--agent", "claude",
            "--output", str(tmp_path / "claude.json"), "--endpoint-url", ministack_endpoint,
        ],
        env={**os.environ, **CREDENTIALS}, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert other.returncode == 2 and "the dev stage runs no claude" in other.stderr


def test_a_stage_that_is_not_deployed_is_reported(ministack_endpoint: str, tmp_path: Path):
    measured = subprocess.run(
        [
            sys.executable, "-m", "control_plane.ops.cold_start", "--env", "staging",
            "--output", str(tmp_path / "out.json"), "--endpoint-url", ministack_endpoint,
        ],
        env={**os.environ, **CREDENTIALS}, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert measured.returncode == 1
    assert (
        "cannot read the staging stage's settings" in measured.stderr and "Staging-Fleet" in measured.stderr
    )
    assert not (tmp_path / "out.json").exists()


def test_a_task_that_stops_before_its_runner_claims_is_a_failed_run(stage: str, tmp_path: Path):
    ecs, logs, cloudformation = (
        boto3.client(name, region_name="us-east-1", endpoint_url=stage, **_keys())
        for name in ("ecs", "logs", "cloudformation")
    )
    described: list[str] = []

    def not_described_at_first(parsed: dict[str, Any], **_: Any) -> None:
        described.append("call")
        if len(described) == 1:  # ECS may not describe a task just started yet
            parsed["failures"] = [{"arn": parsed["tasks"][0]["taskArn"], "reason": "MISSING"}]
            parsed["tasks"] = []

    ecs.meta.events.register("after-call.ecs.DescribeTasks", not_described_at_first)
    # The tool waits LOG_GRACE_S for the last lines of a stopped task to reach CloudWatch; this
    # task wrote none, so a second is enough here.
    stage_settings = discover(cloudformation=cloudformation, ecs=ecs, env="dev")
    meter = Meter(ecs, logs, stage_settings, poll_s=0.1, log_grace_s=1.0)
    with StandInFargate(stage, tmp_path, container="unpullable") as fargate:
        run = meter.measure("shell")

    assert run.task_arn in fargate.seen and len(described) > 2
    assert (
        run.error is not None and "stopped before the runner claimed: CannotPullContainerError" in run.error
    )
    assert run.phases == {}
    cluster = fargate.seen[run.task_arn]["clusterArn"]
    assert ecs.list_tasks(cluster=cluster, startedBy=STARTED_BY)["taskArns"] == []
    [summary] = summarize([run]).values()
    assert (summary["iterations"], summary["failed"], summary["phases"]) == (1, 1, {})


def test_a_task_not_ready_within_the_timeout_is_stopped(stage: str, tmp_path: Path):
    ecs, logs, cloudformation = (
        boto3.client(name, region_name="us-east-1", endpoint_url=stage, **_keys())
        for name in ("ecs", "logs", "cloudformation")
    )
    settings = discover(cloudformation=cloudformation, ecs=ecs, env="dev")
    assert settings.ecs.security_groups == {"shell": "sg-shell"}  # the agent's own group
    meter = Meter(ecs, logs, settings, poll_s=0.1, timeout_s=1.0)
    with StandInFargate(stage, tmp_path, container="silent"):
        run = meter.measure("shell")
    assert run.error == "not ready within 1 s (last status RUNNING)" and run.phases == {}
    [task] = ecs.describe_tasks(cluster=settings.ecs.cluster, tasks=[run.task_arn])["tasks"]
    assert task["lastStatus"] == "STOPPED" and task["stoppedReason"] == "Outpost cold-start measurement"


def _keys() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
