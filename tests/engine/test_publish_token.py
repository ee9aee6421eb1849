"""POST /internal/dispatches/{id}/publish-token: only for a running job that publishes, with its
own job token; the claim answer says what to publish but carries no token."""

from __future__ import annotations

from tests.engine.conftest import World
from tests.engine.test_claims import _job, _post


def test_a_job_that_publishes_nothing_gets_no_token(world: World) -> None:
    job, _ = _job(world)
    assert job["publish"] is None
    reply = _post(world, job, "publish-token", {})
    assert reply.status_code == 409, reply.text
    assert reply.json()["type"].endswith("no-publish")
    assert _post(world, job, "publish-token", {}, token="t-unknown.x").status_code == 401
    assert _post(world, job, "result", {"outcome": "COMPLETED", "exit_code": 0}).status_code == 200
    assert _post(world, job, "publish-token", {}).status_code == 409  # the attempt is over
