"""Fixtures shared by every test package."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from control_plane.emulator import EmulatorServer

# The images, built once per session for the image tests and the container end-to-end tests.
pytest_plugins = ["tests.images.building"]

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


# Under pytest-xdist (`make test` runs `-n 2 --dist loadgroup`), tests that share an expensive
# session resource stay on one worker: the synthesized assembly is built once, and buildah's
# image storage, which is not safe for two concurrent builders, has a single user.
_GROUPS = {
    "synth": lambda item: "synth" in getattr(item, "fixturenames", ()),
    "buildah": lambda item: (
        item.path.name in {"test_images.py", "test_container_runtime.py", "test_in_images.py"}
    ),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = next((name for name, belongs in _GROUPS.items() if belongs(item)), None)
        # Every other module stays whole on one worker too: split between two, each worker
        # would set up the module's fixtures (an `outpost dev`, a batch of agent jobs) again.
        item.add_marker(pytest.mark.xdist_group(group or item.nodeid.split("::", 1)[0]))
