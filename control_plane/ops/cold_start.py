"""Cold starts of a deployed stage's agent tasks: RunTask → RUNNING → the runner's first claim.

    python -m control_plane.ops.cold_start --env dev --agent claude --iterations 10 --output cold-start.json

Per agent and iteration it starts one task as the scaler does (the same RunTask: the stage's
cluster, the agent's task definition, private subnets, the agent's own security group, no public
IP), follows it with DescribeTasks and reads its log stream, and stops it. The runner in the
task gets a claim token the control plane never issued: its first claim, the moment it is
ready to serve a job, is answered 401, which it logs ("claim refused") before it exits. So the
measurement takes no job, writes no task record, and the task is invisible to the engine
(its own ``startedBy``). Phases, in seconds from the task's ``createdAt`` (ECS's clock):

- ``pulled``: the image pulled (``pullStoppedAt``);
- ``running``: the task RUNNING (``startedAt``);
- ``ready``: the runner's first claim answered (the log line's CloudWatch timestamp).

The stage's settings are read where the control plane reads them: the environment of the
control-plane service in the stage's Fleet stack (OUTPOST_CLUSTER_ARN, OUTPOST_TASK_DEFINITIONS,
OUTPOST_SUBNETS, OUTPOST_AGENT_SECURITY_GROUPS, OUTPOST_INTERNAL_URL). Needs credentials that
may read the stacks, run and stop tasks (and pass the agents' execution roles), and read logs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from control_plane.engine import tasks as t
from control_plane.engine.config import EngineSettings
from control_plane.runtime.base import LaunchRequest
from control_plane.runtime.ecs import ON_DEMAND, SPOT, EcsConfig, EcsRuntime

STARTED_BY = "outpost-cold-start"  # not the engine's "outpost": its reconciler never sees these
READY_LINE = "[outpost] claim refused"  # agents/runner/main.py, on a 401 to its first claim
PHASES = ("pulled", "running", "ready")
TIMESTAMPS = {"pulled": "pullStoppedAt", "running": "startedAt"}
LOG_GRACE_S = 30.0  # after the task stops, how long its last lines may take to reach CloudWatch
STOP_REASON = "Outpost cold-start measurement"


@dataclass(frozen=True)
class Stage:
    """What RunTask needs, as the stage's control plane has it."""

    ecs: EcsConfig
    control_plane_url: str  # the runner's OUTPOST_CONTROL_PLANE_URL (the internal URL)


@dataclass
class Run:
    agent: str
    task_arn: str | None = None
    phases: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "task_arn": self.task_arn,
            **{f"{p}_s": self.phases.get(p) for p in PHASES},
            "error": self.error,
        }


# -- the stage's settings ------------------------------------------------------------------------


def discover(*, cloudformation: Any, ecs: Any, env: str) -> Stage:
    """From the control-plane service of the stage's Fleet stack (stacks/fleet.py)."""
    stack = f"{env.capitalize()}-Fleet"
    pages = cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack)
    services = [
        r["PhysicalResourceId"]
        for page in pages
        for r in page["StackResourceSummaries"]
        if r["ResourceType"] == "AWS::ECS::Service"
    ]
    for arn in services:  # arn:aws:ecs:<region>:<account>:service/<cluster>/<service>
        [service] = ecs.describe_services(cluster=arn.split("/")[1], services=[arn])["services"]
        definition = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
        for container in definition["containerDefinitions"]:
            variables = {e["name"]: e["value"] for e in container.get("environment", [])}
            if variables.get("OUTPOST_RUNTIME") == "ecs":
                return Stage(
                    ecs=EcsConfig(
                        cluster=variables["OUTPOST_CLUSTER_ARN"],
                        task_definitions=json.loads(variables["OUTPOST_TASK_DEFINITIONS"]),
                        subnets=tuple(json.loads(variables["OUTPOST_SUBNETS"])),
                        security_groups=json.loads(variables["OUTPOST_AGENT_SECURITY_GROUPS"]),
                    ),
                    control_plane_url=variables["OUTPOST_INTERNAL_URL"],
                )
    raise LookupError(f"no control-plane service with OUTPOST_RUNTIME=ecs in stack {stack}")


# -- one measurement -----------------------------------------------------------------------------


@dataclass
class Meter:
    ecs: Any
    logs: Any
    stage: Stage
    spot: bool = False
    timeout_s: float = 600.0
    poll_s: float = 1.0
    log_grace_s: float = LOG_GRACE_S
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def measure(self, agent: str) -> Run:
        run = Run(agent)
        family = self.stage.ecs.task_definitions.get(agent)
        if family is None:
            run.error = f"the stage has no task definition for agent {agent!r}"
            return run
        try:
            group, prefix = self._log_stream(family)
            run.task_arn = self._start(agent, family)
            self._follow(run, group, prefix)
        finally:
            if run.task_arn:
                self.ecs.stop_task(cluster=self.stage.ecs.cluster, task=run.task_arn, reason=STOP_REASON)
        return run

    def _log_stream(self, family: str) -> tuple[str, str]:
        """The awslogs group and stream prefix of the agent container (constructs/agent_task.py)."""
        definition = self.ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
        for container in definition["containerDefinitions"]:
            if container["name"] == self.stage.ecs.container_name:
                options = (container.get("logConfiguration") or {}).get("options") or {}
                if "awslogs-group" in options and "awslogs-stream-prefix" in options:
                    return options["awslogs-group"], options["awslogs-stream-prefix"]
        raise LookupError(
            f"{family}: no awslogs configuration on container {self.stage.ecs.container_name!r}"
        )

    def _start(self, agent: str, family: str) -> str:
        task_id = t.new_task_id()
        env = {
            "OUTPOST_CONTROL_PLANE_URL": self.stage.control_plane_url,
            "OUTPOST_WORKSPACE": EngineSettings.model_fields["ecs_workspace"].default,
            "OUTPOST_AGENT": agent,
            "OUTPOST_TASK_ID": task_id,
            # well formed and never issued: the first claim is refused, no job is taken
            "OUTPOST_CLAIM_TOKEN": f"{task_id}.{uuid.uuid4().hex}",
        }
        request = LaunchRequest(agent=agent, task_id=task_id, client_token=task_id, env=env, spot=self.spot)
        runtime = EcsRuntime(client=self.ecs, config=self.stage.ecs)
        # The scaler's own RunTask, under another startedBy and group than the engine's.
        params = runtime._run_task_params(request, family, SPOT if self.spot else ON_DEMAND, task_id)
        params.update(startedBy=STARTED_BY, group=f"{STARTED_BY}:{agent}")
        reply = self.ecs.run_task(**params)
        if reply.get("failures") or len(reply.get("tasks") or []) != 1:
            for task in reply.get("tasks") or []:
                self.ecs.stop_task(cluster=self.stage.ecs.cluster, task=task["taskArn"], reason=STOP_REASON)
            raise RuntimeError(f"RunTask failed: {reply.get('failures')}")
        return str(reply["tasks"][0]["taskArn"])

    def _follow(self, run: Run, group: str, prefix: str) -> None:
        assert run.task_arn is not None
        stream = f"{prefix}/{self.stage.ecs.container_name}/{run.task_arn.rsplit('/', 1)[1]}"
        reader = _LogReader(self.logs, group, stream)
        deadline = self.clock() + self.timeout_s
        stopped_at: float | None = None
        while True:
            # a task just started may not be described yet (ECS is eventually consistent)
            described = self.ecs.describe_tasks(cluster=self.stage.ecs.cluster, tasks=[run.task_arn])["tasks"]
            task: dict[str, Any] = described[0] if described else {"lastStatus": "PROVISIONING"}
            ready_ms = reader.find(READY_LINE) if task["lastStatus"] != "PROVISIONING" else None
            if ready_ms is not None:
                created = _seconds(task["createdAt"])
                for phase, key in TIMESTAMPS.items():
                    if task.get(key):
                        run.phases[phase] = round(_seconds(task[key]) - created, 3)
                run.phases["ready"] = round(ready_ms / 1000 - created, 3)
                return
            now = self.clock()
            if task.get("lastStatus") == "STOPPED":
                stopped_at = stopped_at if stopped_at is not None else now
                if now - stopped_at > self.log_grace_s:
                    exits = [c.get("exitCode") for c in task.get("containers", [])]
                    run.error = (
                        f"stopped before the runner claimed: {task.get('stoppedReason')} (exit codes {exits})"
                    )
                    return
            if now > deadline:
                run.error = f"not ready within {self.timeout_s:g} s (last status {task.get('lastStatus')})"
                return
            self.sleep(self.poll_s)


@dataclass
class _LogReader:
    logs: Any
    group: str
    stream: str
    token: str | None = None

    def find(self, text: str) -> int | None:
        """The timestamp (ms) of the stream's first event containing ``text``, once it is there."""
        while True:
            params: dict[str, Any] = {
                "logGroupName": self.group,
                "logStreamName": self.stream,
                "startFromHead": True,
            }
            if self.token:
                params["nextToken"] = self.token
            try:
                page = self.logs.get_log_events(**params)
            except self.logs.exceptions.ResourceNotFoundException:
                return None  # the container has written nothing yet
            for event in page["events"]:
                if text in event["message"]:
                    return int(event["timestamp"])
            if page.get("nextForwardToken") in (None, self.token):
                return None
            self.token = page["nextForwardToken"]


def _seconds(value: datetime | float | str) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        return datetime.fromisoformat(value).timestamp()
    return float(value)


# -- the report ----------------------------------------------------------------------------------


def summarize(runs: Sequence[Run]) -> dict[str, Any]:
    """Per agent: min / avg / median / max of each phase over the runs that got ready."""
    agents: dict[str, Any] = {}
    for agent in dict.fromkeys(run.agent for run in runs):
        mine = [run for run in runs if run.agent == agent]
        phases = {}
        for phase in PHASES:
            values = [run.phases[phase] for run in mine if run.error is None and phase in run.phases]
            if values:
                phases[phase] = {
                    "count": len(values),
                    "min": min(values),
                    "avg": round(statistics.fmean(values), 3),
                    "median": round(statistics.median(values), 3),
                    "max": max(values),
                }
        agents[agent] = {
            "iterations": len(mine),
            "failed": sum(run.error is not None for run in mine),
            "phases": phases,
            "runs": [run.as_json() for run in mine],
        }
    return agents


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m control_plane.ops.cold_start", description=__doc__)
    parser.add_argument("--env", required=True, choices=("dev", "staging", "prod"))
    parser.add_argument(
        "--agent", action="append", help="an agent to measure (repeatable); default: every agent of the stage"
    )
    parser.add_argument("--iterations", type=int, default=10, help="tasks started per agent, one at a time")
    parser.add_argument("--output", type=Path, default=Path("cold-start.json"))
    parser.add_argument("--spot", action="store_true", help="start on FARGATE_SPOT (default: FARGATE)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a task may take to get ready")
    parser.add_argument(
        "--poll-interval", type=float, default=1.0, help="seconds between DescribeTasks calls"
    )
    parser.add_argument("--region", help="default: the stage's region in cdk.json")
    parser.add_argument("--endpoint-url", help=argparse.SUPPRESS)  # the tests' emulator
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from stacks.outputs import stage_region  # the checkout's cdk.json; never in the service image

    region = args.region or stage_region(args.env)
    clients = {
        name: boto3.client(name, region_name=region, endpoint_url=args.endpoint_url)
        for name in ("cloudformation", "ecs", "logs")
    }
    try:
        stage = discover(cloudformation=clients["cloudformation"], ecs=clients["ecs"], env=args.env)
    except (BotoCoreError, ClientError, LookupError) as error:
        print(f"error: cannot read the {args.env} stage's settings: {error}", file=sys.stderr)
        return 1
    agents = args.agent or sorted(stage.ecs.task_definitions)
    unknown = sorted(set(agents) - set(stage.ecs.task_definitions))
    if unknown:
        print(f"error: the {args.env} stage runs no {', '.join(unknown)}", file=sys.stderr)
        return 2
    meter = Meter(
        clients["ecs"],
        clients["logs"],
        stage,
        spot=args.spot,
        timeout_s=args.timeout,
        poll_s=args.poll_interval,
    )
    runs: list[Run] = []
    for agent in agents:
        for iteration in range(1, args.iterations + 1):
            try:
                run = meter.measure(agent)
            except (BotoCoreError, ClientError, LookupError, RuntimeError) as error:
                run = Run(agent, error=str(error))
            runs.append(run)
            shown = ", ".join(f"{p} {run.phases[p]:.1f} s" for p in PHASES if p in run.phases)
            print(f"{agent} {iteration}/{args.iterations}: {run.error or shown}", file=sys.stderr)
    report = {
        "env": args.env,
        "cluster": stage.ecs.cluster,
        "capacity": SPOT if args.spot else ON_DEMAND,
        "phases": {
            "pulled": "image pulled",
            "running": "task RUNNING",
            "ready": "runner's first claim answered",
        },
        "agents": summarize(runs),
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0 if all(run.error is None for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
