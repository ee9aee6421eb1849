"""The dispatch engine as one object: runtime, claims, scaler, tracker, reconciler, loops.

``Engine.start`` runs the background loops in daemon threads of the control-plane process:
the scaler and the reconciler every few seconds (each under its lease, so every replica may run
them), and the task-event consumer. ``create_engine_app`` (control_plane.engine.app) builds the
API with the engine attached.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.registry import AGENTS
from control_plane.aws import AwsClients
from control_plane.budgets import Budgets
from control_plane.engine import tasks as t
from control_plane.engine.admission import Admission
from control_plane.engine.claims import ClaimService
from control_plane.engine.config import EngineSettings
from control_plane.engine.control import EngineTaskControl
from control_plane.engine.deadletters import DeadLetters
from control_plane.engine.metrics import StartMetrics
from control_plane.engine.outcomes import Outcomes
from control_plane.engine.reconciler import Reconciler
from control_plane.engine.scaler import Scaler
from control_plane.engine.tracker import Tracker, event_detail
from control_plane.lifecycle import TERMINAL, Status
from control_plane.metrics import REASON_BUDGET
from control_plane.runtime.base import Runtime, TaskEvent
from control_plane.settings import Settings
from control_plane.store import Stores

if TYPE_CHECKING:
    from control_plane.runtime.ecs import EcsConfig

log = logging.getLogger("outpost.engine")


def build_runtime(
    settings: Settings, engine: EngineSettings, event_sink: Callable[[TaskEvent], None]
) -> Runtime:
    if settings.runtime == "ecs":
        from control_plane.runtime.ecs import EcsRuntime, ecs_client
        from control_plane.runtime.provider_keys import SecretKeys, secrets_client

        keys = None
        if settings.agent_secrets:
            client = secrets_client(settings.region, settings.aws_endpoint_url)
            keys = SecretKeys(client=client, secrets=settings.agent_secrets)
        return EcsRuntime(
            client=ecs_client(settings.region, settings.aws_endpoint_url),
            config=ecs_config(settings, engine),
            provider_keys=keys,
        )
    from control_plane.runtime.local import LocalRuntime

    state_dir = engine.local_state_dir or Path(os.environ.get("TMPDIR", "/tmp")) / "outpost-local"  # noqa: S108
    return LocalRuntime(
        state_dir=state_dir,
        control_plane_url=settings.internal_url or "",
        event_sink=event_sink,
        extra_env={"OUTPOST_IDLE_TIMEOUT_S": str(engine.runner_idle_timeout_s)},
        agent_settings={agent: settings.settings_of(agent) for agent in AGENTS},
        stop_grace_s=engine.local_stop_grace_s,
    )


def ecs_config(settings: Settings, engine: EngineSettings) -> EcsConfig:
    """Where RunTask starts each agent's tasks: the stage's cluster and private subnets, the
    agent's task definition and the agent's own security group."""
    from control_plane.runtime.ecs import EcsConfig

    return EcsConfig(
        cluster=settings.cluster_arn or "",
        task_definitions=dict(settings.task_definitions),
        subnets=tuple(settings.subnets),
        security_groups=dict(settings.agent_security_groups),
        container_name=engine.agent_container,
    )


def deployed_agents(settings: Settings) -> list[str]:
    """The agents this stage runs: on ECS, those whose task definitions the fleet injects
    (OUTPOST_TASK_DEFINITIONS); local mode runs every agent of the registry."""
    if settings.runtime == "ecs":
        return [name for name in settings.task_definitions if name in AGENTS]
    return list(AGENTS)


class Engine:
    def __init__(
        self,
        *,
        settings: Settings,
        clients: AwsClients,
        stores: Stores,
        engine_settings: EngineSettings | None = None,
        runtime: Runtime | None = None,
        owner: str | None = None,
    ) -> None:
        self.settings = settings
        self.config = engine_settings or EngineSettings()
        self.clients = clients
        self.stores = stores
        self.owner = owner or self.config.engine_owner or f"cp-{uuid.uuid4().hex[:12]}"
        self.agents = list(AGENTS)
        ddb, table = clients.dynamodb, settings.dispatches_table
        queue_urls = dict(settings.dispatch_queue_urls)
        self.metrics = StartMetrics()
        self.tasks = t.TaskStore(client=ddb, table=table)
        self.runtime = runtime or build_runtime(settings, self.config, self.deliver_event)
        self.outcomes = Outcomes(
            stores=stores,
            sqs=clients.sqs,
            queue_urls=queue_urls,
            max_attempts=self.config.max_attempts,
            metrics=self.metrics,
            on_end=lambda: self.wake("admission"),
        )
        self.claims = ClaimService(
            stores=stores,
            tasks=self.tasks,
            sqs=clients.sqs,
            queue_urls=queue_urls,
            s3=clients.s3,
            bucket=settings.artifacts_bucket,
            long_poll_s=self.config.claim_long_poll_s,
            metrics=self.metrics,
            gateway_url=f"{settings.internal_url.rstrip('/')}/gateway" if settings.internal_url else None,
        )
        self.admission = Admission(
            client=ddb, table=table, stores=stores, sqs=clients.sqs, queue_urls=queue_urls
        )
        self.task_control = EngineTaskControl(
            tasks=self.tasks, runtime=self.runtime, agents=self.agents, on_work=self._work_arrived
        )
        # the model gateway's budgets: a spent budget ends the dispatch and stops its task
        self.budgets = Budgets(
            client=ddb,
            table=table,
            tenant=lambda tenant_id: stores.tenants.get(tenant_id=tenant_id),
            on_exceeded=self._budget_exceeded,
        )
        self.tracker = Tracker(
            stores=stores,
            tasks=self.tasks,
            outcomes=self.outcomes,
            container_name=self.config.agent_container,
        )
        self.scaler = Scaler(
            client=ddb,
            table=table,
            tasks=self.tasks,
            runtime=self.runtime,
            lease=t.Lease(
                client=ddb, table=table, name="scaler", owner=self.owner, duration_s=self.config.lease_s
            ),
            warm_pool=self.config.warm_pool_sizes(deployed_agents(settings)),
            spot={name: agent.spot for name, agent in AGENTS.items()},
            runner_env=self.runner_env,
            max_tasks_per_agent=self.config.max_tasks_per_agent,
            max_launches_per_tick=self.config.max_launches_per_tick,
            idle_scale_down_s=self.config.idle_scale_down_s,
            metrics=self.metrics,
        )
        self.reconciler = Reconciler(
            client=ddb,
            table=table,
            stores=stores,
            tasks=self.tasks,
            runtime=self.runtime,
            lease=t.Lease(
                client=ddb, table=table, name="reconciler", owner=self.owner, duration_s=self.config.lease_s
            ),
            outcomes=self.outcomes,
            tracker=self.tracker,
            sqs=clients.sqs,
            queue_urls=queue_urls,
            agents=self.agents,
            timeout_grace_s=self.config.timeout_grace_s,
            launch_grace_s=self.config.launch_grace_s,
            max_pending_s=self.config.max_pending_s,
            enqueue_after_s=max(2 * self.config.reconcile_interval_s, 2.0),
            dead_letters=(
                DeadLetters(sqs=clients.sqs, queue_url=settings.dead_letter_queue_url, stores=stores)
                if settings.dead_letter_queue_url
                else None
            ),
        )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._wakeups = {loop: threading.Event() for loop in ("admission", "scaler", "reconciler")}

    def runner_env(self, agent: str) -> dict[str, str]:
        env = {}
        if self.settings.internal_url:
            env["OUTPOST_CONTROL_PLANE_URL"] = self.settings.internal_url
        if self.settings.runtime == "ecs":
            env["OUTPOST_WORKSPACE"] = self.config.ecs_workspace  # local tasks get a temp dir each
        return env

    # -- events ------------------------------------------------------------------------------

    def deliver_event(self, event: TaskEvent) -> None:
        """Where the local runtime's task events go: the task-events queue when there is one
        (the path EventBridge takes in AWS), else straight to the tracker."""
        url = self.settings.task_events_queue_url
        if url:
            self.clients.sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))
        else:
            self.tracker.handle_batch([event["detail"]])

    def consume_events(self, wait_s: int = 1) -> int:
        url = self.settings.task_events_queue_url
        if not url:
            return 0
        reply = self.clients.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s, VisibilityTimeout=30
        )
        messages = reply.get("Messages", [])
        details = []
        for message in messages:
            detail = event_detail(message["Body"])
            if detail is not None:
                details.append(detail)
        if details:
            self.tracker.handle_batch(details)
        for message in messages:  # applied (or not ours): done with them
            self.clients.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return len(details)

    # -- loops -------------------------------------------------------------------------------

    def start(self) -> None:
        if not self.config.engine_enabled or self._threads:
            return
        self._stop.clear()
        # an admission pass that admitted work starts a scaling pass for it at once
        self._loop("admission", self.config.scale_interval_s, self.admission.tick, then="scaler")
        self._loop("scaler", self.config.scale_interval_s, self.scaler.tick)
        self._loop("reconciler", self.config.reconcile_interval_s, self.reconciler.tick)
        if self.settings.task_events_queue_url:
            self._loop("events", 0.0, self.consume_events)

    def _budget_exceeded(self, dispatch_id: str, message: str) -> None:
        record = self.stores.dispatches.get(dispatch_id=dispatch_id, tenant_id=None)
        if record is None or record.status in TERMINAL:
            return
        ended = self.outcomes.finish(
            record, Status.FAILED, component="gateway", changes={"error": message}, failure=REASON_BUDGET
        )
        if ended is not None and record.task_id:
            self.task_control.stop_task(record.task_id, reason="budget exceeded")

    def _work_arrived(self) -> None:
        self.wake("admission")
        self.wake("scaler")

    def wake(self, loop: str) -> None:
        """Run the loop's next pass now, not at its interval: new work arrived (a dispatch
        queued: "scaler"; a run slot freed: "admission"). Only this replica's loops wake; the
        others find the work at their own interval."""
        self._wakeups[loop].set()

    def _loop(self, name: str, interval: float, step: Callable[[], Any], then: str | None = None) -> None:
        wakeup = self._wakeups.setdefault(name, threading.Event())  # "events" never waits

        def run() -> None:
            while not self._stop.is_set():
                try:
                    if step() and then is not None:
                        self.wake(then)
                except Exception:
                    log.exception("engine loop %s failed; continuing", name)
                    self._stop.wait(1.0)
                if interval:
                    wakeup.wait(interval)  # set by wake() or stop()
                    wakeup.clear()

        thread = threading.Thread(target=run, name=f"outpost-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, *, stop_tasks: bool = True) -> None:
        self._stop.set()
        for wakeup in self._wakeups.values():
            wakeup.set()
        # The events loop may be in a one-second long poll: the tasks are stopped meanwhile.
        passes = [thread for thread in self._threads if thread.name != "outpost-events"]
        for thread in passes:
            thread.join(timeout=25)
        self.scaler.lease.release()
        self.reconciler.lease.release()
        self.runtime.close(stop_tasks=stop_tasks)
        for thread in self._threads:
            thread.join(timeout=25)
        self._threads.clear()
