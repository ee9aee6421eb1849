"""Control-plane fixtures: the app on a TestClient, its data on the moto server over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from control_plane.aws import AwsClients, make_clients
from control_plane.bootstrap import Resources
from control_plane.main import create_app
from control_plane.settings import Settings
from tests.control_plane.helpers import (
    ADMIN_KEY,
    RecordingTaskControl,
    fresh_resources,
    make_tenant,
    settings_for,
)


@pytest.fixture(scope="session")
def shared_resources(moto_endpoint: str) -> Resources:
    return fresh_resources(moto_endpoint)


@pytest.fixture
def task_control() -> RecordingTaskControl:
    return RecordingTaskControl()


@pytest.fixture
def settings(moto_endpoint: str, shared_resources: Resources) -> Settings:
    return settings_for(moto_endpoint, shared_resources)


@pytest.fixture(scope="session")
def aws_clients(moto_endpoint: str, shared_resources: Resources) -> AwsClients:
    # boto3 clients take ~0.1 s each to build; every app of the session shares one set
    return make_clients(settings_for(moto_endpoint, shared_resources))


@pytest.fixture
def app(settings: Settings, task_control: RecordingTaskControl, aws_clients: AwsClients) -> Any:
    return create_app(settings, task_control=task_control, clients=aws_clients)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def tenant(client: TestClient) -> dict[str, Any]:
    return make_tenant(client)


@pytest.fixture
def other_tenant(client: TestClient) -> dict[str, Any]:
    return make_tenant(client, name="globex")
