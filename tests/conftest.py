"""Fixtures shared by every test package."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

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


# Under pytest-xdist (`make test` runs `-n 2 --dist loadscope`), each test module runs whole on
# one worker, so that its fixtures are set up once, and these groups of modules share a worker
# (and so an expensive session resource): the synthesized assembly of the infra tests, buildah's
# image storage (not safe for two concurrent builders; the images are built once), the one
# `outpost dev` of the e2e tests and the one of the real agents. The scheduler decides from the
# test's id alone: pytest-xdist 3.8's own `xdist_group` marks have no effect under pytest 9.
_GROUPS = {
    "diff": ("tests/infra/test_diff.py",),  # synthesizes on its own: free to run beside "synth"
    "buildah": (
        "tests/images/",
        "tests/e2e/test_container_runtime.py",
        "tests/agents/real/test_in_images.py",
    ),
    "synth": ("tests/infra/",),
    "e2e": ("tests/e2e/",),
    "real-agents": ("tests/agents/real/",),
}


def scope_of(nodeid: str) -> str:
    """The worker group of a test: the first group one of whose paths starts its id, else its module."""
    module = nodeid.split("::", 1)[0]
    return next((group for group, paths in _GROUPS.items() if module.startswith(paths)), module)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return ByGroup(config, log)
