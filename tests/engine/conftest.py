"""Engine fixtures: fresh tables and queues in the moto server (over HTTP), the engine's app on
a TestClient with its loops stopped (tests drive each pass), and a local runtime whose tasks
are real `sleep` processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from control_plane.aws import AwsClients
from control_plane.bootstrap import Resources, ensure_resources
from control_plane.engine import tasks as t
from control_plane.engine.app import create_engine_app
from control_plane.engine.config import EngineSettings
from control_plane.engine.service import Engine
from control_plane.queueing import enqueue_dispatch
from control_plane.runtime.local import LocalRuntime
from control_plane.settings import Settings
from control_plane.store import Actor, DispatchRecord, Stores
from control_plane.store.dispatches import new_dispatch_id
from tests.emulators.ministack import running_ministack

ADMIN_KEY = "op_admin_" + "e" * 40
NO_WARM_POOL = {"claude": 0, "codex": 0, "gemini": 0, "aider": 0, "grok": 0, "shell": 0}


@dataclass
class World:
    resources: Resources
    settings: Settings
    engine: Engine
    client: TestClient
    tenant_id: str
    api_key: str
    runtime: LocalRuntime
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def stores(self) -> Stores:
        return self.engine.stores

    @property
    def clients(self) -> AwsClients:
        return self.engine.clients

    @property
    def tasks(self) -> t.TaskStore:
        return self.engine.tasks

    def dispatch(
        self, task: str = "echo hi", *, agent: str = "shell", timeout_s: int = 600
    ) -> DispatchRecord:
        """A dispatch as POST /dispatch leaves it: PENDING and enqueued."""
        record = self.stores.dispatches.create(
            record=DispatchRecord(
                dispatch_id=new_dispatch_id(),
                tenant_id=self.tenant_id,
                agent=agent,
                task=task,
                timeout_s=timeout_s,
            ),
            actor=Actor.system("test"),
        )
        enqueue_dispatch(
            record,
            sqs=self.clients.sqs,
            queue_urls=self.settings.dispatch_queue_urls,
            store=self.stores.dispatches,
        )
        return record

    def get(self, dispatch_id: str) -> DispatchRecord:
        record = self.stores.dispatches.get(dispatch_id=dispatch_id, tenant_id=None)
        assert record is not None
        return record

    def new_task(self, agent: str = "shell", launched_for: str = "warm") -> tuple[t.TaskRecord, str]:
        """A task record as the scaler leaves it before launch; returns it and its claim token."""
        task_id = t.new_task_id()
        token, token_hash = t.make_token(task_id)
        assert self.tasks.create(
            task_id=task_id,
            agent=agent,
            launched_for=launched_for,
            client_token=task_id,
            token_hash=token_hash,
        )
        record = self.tasks.get(task_id)
        assert record is not None
        return record, token

    def claim(self, token: str, task_id: str):
        return self.client.post(
            "/internal/claim", json={"task_id": task_id}, headers={"Authorization": f"Bearer {token}"}
        )

    def queue_depth(self, agent: str = "shell") -> int:
        attrs = self.clients.sqs.get_queue_attributes(
            QueueUrl=self.settings.dispatch_queue_urls[agent],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def make_world(moto_endpoint: str, tmp_path, **engine_overrides: Any) -> World:
    resources = ensure_resources(
        endpoint_url=moto_endpoint, prefix=f"e{uuid.uuid4().hex[:10]}", agents=("shell",)
    )
    settings = Settings(
        env="local",
        aws_endpoint_url=moto_endpoint,
        admin_key=ADMIN_KEY,
        dispatch_queue_urls=resources.dispatch_queue_urls,
        artifacts_bucket=resources.artifacts_bucket,
        task_events_queue_url=resources.task_events_queue_url,
        dead_letter_queue_url=resources.dead_letter_queue_url,
        internal_url="http://127.0.0.1:9",
        **resources.tables,
    )
    events: list[dict[str, Any]] = []
    runtime = LocalRuntime(
        state_dir=tmp_path / f"runtime-{uuid.uuid4().hex[:6]}",
        command=("sleep", "300"),
        event_sink=events.append,
        stop_grace_s=1.0,
    )
    options = {
        "claim_long_poll_s": 1.0,
        "warm_pool": NO_WARM_POOL,
        "engine_enabled": False,
        "timeout_grace_s": 0.0,
        "launch_grace_s": 1.0,
        **engine_overrides,
    }
    app = create_engine_app(settings, engine_settings=EngineSettings(**options), runtime=runtime)
    engine: Engine = app.state.engine
    _, api_key = engine.stores.tenants.create(
        name="engine-tests", max_running=50, max_queued=50, allowed_agents=None, actor=Actor.system("test")
    )
    tenant = engine.stores.tenants.by_api_key(api_key=api_key)
    assert tenant is not None
    return World(resources, settings, engine, TestClient(app), tenant.tenant_id, api_key, runtime, events)


@pytest.fixture(scope="session")
def ministack_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The ECS emulator (tests/emulators/ministack.py) on loopback for the whole session."""
    with running_ministack(tmp_path_factory.mktemp("ministack") / "ministack.log") as url:
        yield url


@pytest.fixture
def world(moto_endpoint: str, tmp_path) -> Iterator[World]:
    instance = make_world(moto_endpoint, tmp_path)
    try:
        yield instance
    finally:
        instance.runtime.close(stop_tasks=True, timeout_s=5)
