"""AWS requests per dispatch: one happy-path lifecycle on the ECS runtime, counted at the client.

What sets a dispatch's AWS cost and its share of the throttling limits is the number of
requests it makes. They are counted here on the production path: the engine's app (API,
claim protocol, scaler, tracker) with its own boto3 clients against the moto server (DynamoDB,
SQS, S3, over HTTP), and the ECS runtime's real calls against ministack, through the layer that
holds it to the ECS API reference and emits the task-state events (tests/emulators/ecs.py) -
the world of tests/engine/test_ecs_emulator.py, in the dev stage's configuration (a warm pool
of one shell task).

How the requests are counted:

- DynamoDB, SQS, S3: botocore's ``before-send`` event on the engine's clients
  (control_plane/aws_calls.py), once per HTTP request, retries included; plus the runner's
  presigned bundle uploads (S3 PUTs that no boto3 client sends), counted where they are made.
- ECS: the calls the ECS runtime makes to the emulator layer (its own look-ups excluded).
- What the benchmark itself does to drive the world (reading a task's overrides, ECS starting
  and stopping a task, EventBridge delivering its events) is not counted: AWS or the runner
  does that in production, through no client of Outpost's.

Idle polling is excluded by difference. The engine's loops are off; each round drives the
passes that production runs on its own - an admission pass, a scaling pass, the task-events
consumer until the queue is empty - once with no dispatch (the idle cycle), then once around a
dispatch's whole lifecycle: POST /dispatch; the warm task's runner claims it, ships a batch of
log lines, asks for its upload URLs, uploads the four bundle files and reports COMPLETED; the
scaling pass launches the replacement warm task (ECS starts it: PROVISIONING, PENDING, RUNNING
events); the used task exits (a STOPPED event). A dispatch's requests are the difference of
the two cycles, per service and operation: exact, since the passes are the same. Left out: the
periodic passes whose cost does not depend on dispatches (the reconciler, a waiting runner's
empty claim long polls, the events consumer's empty long polls) and the user's reads of the
dispatch (GET /dispatch, logs, artifacts).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from control_plane import metrics
from control_plane.aws_calls import AwsCallCounter
from control_plane.emulator import EmulatorServer
from control_plane.runtime.ecs import task_env
from tests.bench.figures import distribution
from tests.emulators.ministack import running_ministack
from tests.emulators.task_definition import synthesized_properties
from tests.engine.test_ecs_emulator import EcsWorld, make_ecs_world

SAMPLES = int(os.environ.get("OUTPOST_BENCH_LIFECYCLES", "30"))
SERVICES = {"dynamodb": "ddb", "sqs": "sqs", "s3": "s3"}
BUNDLE = {
    "patch.diff": b"",
    "transcript.txt": b"ok\n",
    "summary.json": b"{}",
    "manifest.json": b'{"files": []}',
}


class Lifecycle:
    """Drives the ECS world through idle cycles and dispatch lifecycles, counting requests."""

    def __init__(self, world: EcsWorld) -> None:
        self.world = world
        self.counter = AwsCallCounter().watch(world.clients.dynamodb, world.clients.sqs, world.clients.s3)
        self.tenant = {"Authorization": f"Bearer {world.api_key}"}
        self.known: set[str] = set()
        self.idle_shell: str | None = None
        self.http = httpx.Client(timeout=10)
        self.steps: Counter[str] = Counter()  # "step: service.Operation" -> requests, all lifecycles
        self._mark = self.counter.snapshot()

    def _step(self, name: str) -> None:
        """Attributes the requests since the last step to this one."""
        now = self.counter.snapshot()
        delta = Counter(now)
        delta.subtract(self._mark)
        self._mark = now
        for (service, operation), count in delta.items():
            if count:
                self.steps[f"{name}: {service}.{operation}"] += count

    def _launched(self) -> None:
        """ECS starts the tasks the scaling pass just launched (PENDING, RUNNING events)."""
        for arn in sorted(set(self.world.arns()) - self.known):
            self.known.add(arn)
            self.world.ecs.start(arn)
            if self.world.describe(arn)["group"] == "outpost:shell":
                self.idle_shell = arn

    def _passes(self) -> None:
        engine = self.world.engine
        engine.admission.tick()
        engine.scaler.tick()
        self._launched()
        self.world.deliver_events()

    def _exit(self, arn: str) -> None:
        """The used task's runner exited 0: ECS stops the task and reports it STOPPED."""
        ecs = self.world.ecs
        ecs.client.stop_task(cluster=self.world.settings.cluster_arn, task=arn, reason="exited")
        task = self.world.describe(arn)
        task.update(lastStatus="STOPPED", stopCode="EssentialContainerExited",
                    stoppedReason="Essential container in task exited")  # fmt: skip
        for container in task.get("containers", []):
            container.update(lastStatus="STOPPED", exitCode=0)
        ecs._emit(task)

    def _run_job(self) -> None:
        world, arn = self.world, self.idle_shell
        assert arn is not None, "no idle shell task"
        reply = world.client.post(
            "/dispatch", json={"agent": "shell", "task": "echo ok"}, headers=self.tenant
        )
        assert reply.status_code == 202, reply.text
        dispatch_id = reply.json()["dispatch_id"]
        self._step("POST /dispatch")
        env = task_env(world.describe(arn))  # what the runner finds in its environment
        claimed = world.claim(env["OUTPOST_CLAIM_TOKEN"], env["OUTPOST_TASK_ID"])
        assert claimed.status_code == 200, claimed.text
        self._step("claim")
        job = {"Authorization": f"Bearer {claimed.json()['job_token']}"}
        base = f"/internal/dispatches/{dispatch_id}"
        assert (
            world.client.post(f"{base}/logs", json={"lines": ["$ echo ok", "ok"]}, headers=job).status_code
            == 202
        )
        self._step("logs (one batch)")
        uploads = world.client.post(f"{base}/uploads", headers=job)
        assert uploads.status_code == 200, uploads.text
        for name, url in uploads.json()["uploads"].items():
            assert self.http.put(url, content=BUNDLE[name]).status_code == 200
            self.counter.add("s3", "PutObject (presigned, by the runner)")
        self._step("uploads")
        result = world.client.post(
            f"{base}/result", json={"outcome": "COMPLETED", "exit_code": 0}, headers=job
        )
        assert result.status_code == 200, result.text
        self._step("result")
        self.idle_shell = None
        self._passes()  # the replacement warm task
        self._exit(arn)
        world.deliver_events()
        self._step("passes and task events (before the idle cycle's are subtracted)")
        assert world.get(dispatch_id).status.value == "COMPLETED"

    def cycle(self, *, dispatch: bool) -> tuple[Counter[tuple[str, str]], Counter[str]]:
        before, ecs_before = self.counter.snapshot(), Counter(self.world.ecs.calls)
        if dispatch:
            self._run_job()
        else:
            self._passes()
            self._step("idle cycle")
        ecs = Counter(self.world.ecs.calls)
        ecs.subtract(ecs_before)
        after = self.counter.snapshot()
        after.subtract(before)
        return after, ecs


def _measure(world: EcsWorld) -> dict[str, Any]:
    life = Lifecycle(world)
    life._passes()  # the warm pool
    life._passes()
    per_op: list[Counter[str]] = []
    for _ in range(SAMPLES):
        idle, idle_ecs = life.cycle(dispatch=False)
        busy, busy_ecs = life.cycle(dispatch=True)
        sample: Counter[str] = Counter()
        for (service, operation), count in busy.items():
            sample[f"{service}.{operation}"] += count
        for (service, operation), count in idle.items():
            sample[f"{service}.{operation}"] -= count
        for operation, count in busy_ecs.items():
            sample[f"ecs.{operation}"] += count - idle_ecs.get(operation, 0)
        per_op.append(sample)
    operations = sorted({op for sample in per_op for op in sample})
    breakdown = {op: distribution([s[op] for s in per_op], digits=2) for op in operations}

    def total(prefix: str) -> list[float]:
        return [sum(v for op, v in s.items() if op.startswith(prefix + ".")) for s in per_op]

    figures: dict[str, Any] = {
        f"{short}_calls_per_dispatch": distribution(total(service), digits=2)
        for service, short in SERVICES.items()
    }
    figures["runtask_calls_per_dispatch"] = distribution([s["ecs.run_task"] for s in per_op], digits=2)
    figures["describe_tasks_calls_per_dispatch"] = distribution(
        [s["ecs.describe_tasks"] for s in per_op], digits=2
    )
    steps = {name: round(count / SAMPLES, 2) for name, count in sorted(life.steps.items())}
    _print(figures, breakdown, steps)
    return {**figures, "aws_calls_breakdown": breakdown, "aws_calls_by_step": steps}


def _print(figures: dict[str, Any], breakdown: dict[str, Any], steps: dict[str, float]) -> None:
    print(f"AWS requests per happy-path dispatch on the ECS runtime (median of {SAMPLES} lifecycles)")
    for op, figure in breakdown.items():
        if figure["median"] or figure["p99"]:
            print(f"  {op:<58} {figure['median']:>5g}  (min {figure['min']:g}, max {figure['p99']:g})")
    print("  by step of the lifecycle (mean per lifecycle):")
    for name, count in steps.items():
        print(f"    {name:<76} {count:>5g}")
    for name, figure in figures.items():
        print(f"  {name:<58} {figure['median']:>5g}")


def main() -> dict[str, Any]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    metrics.sink = lambda line: None
    properties = synthesized_properties("shell")
    server = EmulatorServer()
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="outpost-bench-ecs-") as tmp:
            with running_ministack(Path(tmp) / "ministack.log") as ministack:
                world = make_ecs_world(server.url, ministack, properties)
                try:
                    return _measure(world)
                finally:
                    world.runtime.close(stop_tasks=False)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
