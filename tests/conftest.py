"""Fixtures shared by every test package."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from control_plane.emulator import EmulatorServer

# No test may reach a real AWS endpoint or pick up a developer's credentials.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",  # noqa: S105 - the emulator's dummy credentials
    AWS_SESSION_TOKEN="testing",  # noqa: S105
    AWS_DEFAULT_REGION="us-east-1",
)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on loopback for the whole session; boto3 talks to it over HTTP."""
    server = EmulatorServer()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
