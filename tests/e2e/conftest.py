"""`outpost dev` as a real process, driven over its HTTP API (fixtures of the e2e tests)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.e2e.helpers import Dev, start_dev, stop_dev


# The package's: it stops after the last e2e test (an idle `outpost dev` still costs a few
# percent of a core, which the rest of the session would pay).
@pytest.fixture(scope="package")
def dev(tmp_path_factory) -> Iterator[Dev]:
    state = tmp_path_factory.mktemp("outpost-dev") / "state"
    instance = start_dev(state)
    try:
        yield instance
    finally:
        stop_dev(instance)
        shutil.rmtree(state, ignore_errors=True)
