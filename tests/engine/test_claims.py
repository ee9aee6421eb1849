"""The claim protocol's control-plane side, through the internal endpoints (docs/design.md)."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import httpx

from agents.runner.timing import UPLOAD_URL_TTL_S
from control_plane.engine import tasks as t
from control_plane.lifecycle import Status
from control_plane.metrics import COLD_STARTS, WARM_POOL_HITS
from tests.engine.conftest import World

FORGED_TOKEN = "t-forged.secret"  # noqa: S105 - a token the control plane never issued


def test_claim_starts_the_job_and_upload_urls_are_scoped_to_its_attempt(world: World):
    record = world.dispatch("echo hi > out.txt", timeout_s=120)
    task, token = world.new_task()
    reply = world.claim(token, task.task_id)
    assert reply.status_code == 200, reply.text
    job = reply.json()
    assert job["dispatch_id"] == record.dispatch_id
    assert (job["agent"], job["task"], job["timeout_s"], job["attempt"], job["repo"]) == (
        "shell",
        "echo hi > out.txt",
        120,
        1,
        None,
    )
    assert job["job_token"] and job["job_token"] != token
    assert "uploads" not in job  # signed when the runner is ready to upload, not at claim time
    # the dispatch is RUNNING on this task, in one write
    started = world.get(record.dispatch_id)
    assert started.status is Status.RUNNING and started.task_id == task.task_id
    uploads = _uploads(world, job)
    assert set(uploads) == {"patch.diff", "transcript.txt", "summary.json", "manifest.json"}
    prefix = f"/{world.settings.artifacts_bucket}/tenants/{world.tenant_id}/dispatches/{record.dispatch_id}/attempt-1/"
    for name, url in uploads.items():
        assert urlsplit(url).path == prefix + name
    # and an upload URL works
    assert httpx.put(uploads["patch.diff"], content=b"diff --git a/x b/x\n").status_code == 200
    listed = world.client.get(
        f"/dispatch/{record.dispatch_id}/artifacts", headers={"Authorization": f"Bearer {world.api_key}"}
    ).json()
    assert [a["name"] for a in listed["items"]] == ["patch.diff"]


def test_a_claim_token_works_once_and_a_task_claims_at_most_one_job(world: World):
    first, second = world.dispatch(), world.dispatch()
    task, token = world.new_task()
    claimed = world.claim(token, task.task_id)
    assert claimed.status_code == 200
    # until the job token is used, a retry gets the same job (its answer may have been lost)
    retry = world.claim(token, task.task_id)
    assert retry.status_code == 200 and retry.json()["dispatch_id"] == claimed.json()["dispatch_id"]
    assert _post(world, retry.json(), "logs", {"lines": ["started"]}).status_code == 202
    again = world.claim(token, task.task_id)
    assert again.status_code == 401
    assert {world.get(first.dispatch_id).status, world.get(second.dispatch_id).status} == {
        Status.RUNNING,
        Status.PENDING,
    }


def test_concurrent_claims_with_one_token_start_exactly_one_job(world: World):
    jobs = [world.dispatch() for _ in range(3)]
    task, token = world.new_task()
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(3)

    def claim() -> None:
        barrier.wait()
        answers.append(world.claim(token, task.task_id))

    threads = [threading.Thread(target=claim) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The losers answer "call again" (204), or are refused once the winner's claim is done; one
    # that arrives after the winner committed gets the same job again (its answer may have been
    # lost), and the earlier job token dies.
    assert {reply.status_code for reply in answers} <= {200, 204, 401}
    assert len({reply.json()["dispatch_id"] for reply in answers if reply.status_code == 200}) == 1
    statuses = [world.get(j.dispatch_id).status for j in jobs]
    assert statuses.count(Status.RUNNING) == 1 and statuses.count(Status.PENDING) == 2


def test_two_tasks_never_start_the_same_job(world: World):
    job = world.dispatch()
    (task_a, token_a), (task_b, token_b) = world.new_task(), world.new_task()
    answers: dict[str, int] = {}

    def claim(name: str, token: str, task_id: str) -> None:
        answers[name] = world.claim(token, task_id).status_code

    threads = [
        threading.Thread(target=claim, args=("a", token_a, task_a.task_id)),
        threading.Thread(target=claim, args=("b", token_b, task_b.task_id)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers.values()) == [200, 204]
    assert world.get(job.dispatch_id).status is Status.RUNNING


def test_a_cancelled_job_is_never_started(world: World):
    job = world.dispatch("echo never")
    cancelled = world.client.delete(
        f"/dispatch/{job.dispatch_id}", headers={"Authorization": f"Bearer {world.api_key}"}
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    task, token = world.new_task()
    assert world.claim(token, task.task_id).status_code == 204
    assert world.get(job.dispatch_id).status is Status.CANCELLED
    assert world.queue_depth() == 0  # the cancelled job's message is gone
    assert world.tasks.get(task.task_id).state == t.UNCLAIMED  # the token is still good for a job


def test_no_job_means_204_and_the_token_stays_valid(world: World):
    task, token = world.new_task()
    assert world.claim(token, task.task_id).status_code == 204
    job = world.dispatch()
    reply = world.claim(token, task.task_id)
    assert reply.status_code == 200 and reply.json()["dispatch_id"] == job.dispatch_id


def test_claims_without_a_valid_token_are_refused(world: World):
    world.dispatch()
    task, token = world.new_task()
    other, other_token = world.new_task()
    assert world.claim("t-unknown.secret", task.task_id).status_code == 401
    assert world.claim(token + "x", task.task_id).status_code == 401
    assert world.claim(other_token, task.task_id).status_code == 401  # another task's token
    no_auth = world.client.post("/internal/claim", json={"task_id": task.task_id})
    assert no_auth.status_code == 401
    bad_body = world.client.post(
        "/internal/claim", json={"task": task.task_id}, headers={"Authorization": f"Bearer {token}"}
    )
    assert bad_body.status_code == 422


def test_a_stopping_task_cannot_claim(world: World):
    world.dispatch()
    task, token = world.new_task()
    world.engine.task_control.stop_task(task.task_id, reason="scaled down")
    assert world.claim(token, task.task_id).status_code == 401


def _claimed(world: World, token: str, task_id: str) -> dict:
    """The job a claim answers with; a 1 s test poll on a busy machine may first come back empty."""
    for _ in range(5):
        reply = world.claim(token, task_id)
        if reply.status_code != 204:
            break
    assert reply.status_code == 200, reply.text
    return reply.json()


def _job(world: World) -> tuple[dict, str]:
    record = world.dispatch("true")
    task, token = world.new_task()
    job = _claimed(world, token, task.task_id)
    assert job["dispatch_id"] == record.dispatch_id
    return job, task.task_id


def _uploads(world: World, job: dict) -> dict[str, str]:
    reply = _post(world, job, "uploads", {})
    assert reply.status_code == 200, reply.text
    assert reply.json()["expires_in_s"] == UPLOAD_URL_TTL_S
    return reply.json()["uploads"]


def _post(world: World, job: dict, what: str, body: dict, token: str | None = None):
    return world.client.post(
        f"/internal/dispatches/{job['dispatch_id']}/{what}",
        json=body,
        headers={"Authorization": f"Bearer {token or job['job_token']}"},
    )


def test_result_completes_the_dispatch_with_exit_code_and_artifacts(world: World):
    job, _ = _job(world)
    httpx.put(_uploads(world, job)["patch.diff"], content=b"patch")
    reply = _post(world, job, "result", {"outcome": "COMPLETED", "exit_code": 0, "summary": {"files": 1}})
    assert reply.status_code == 200, reply.text
    record = world.get(job["dispatch_id"])
    assert record.status is Status.COMPLETED and record.exit_code == 0
    assert record.artifacts == ["patch.diff"] and record.summary == {"files": 1}
    # a repeated report is accepted; a contradicting one is a conflict
    assert _post(world, job, "result", {"outcome": "COMPLETED", "exit_code": 0}).status_code == 200
    assert _post(world, job, "result", {"outcome": "FAILED", "exit_code": 1}).status_code == 409


def test_result_needs_the_job_token_of_that_dispatch(world: World):
    job, _ = _job(world)
    other, _ = _job(world)
    assert _post(world, job, "result", {"outcome": "COMPLETED"}, token=other["job_token"]).status_code == 401
    assert _post(world, job, "result", {"outcome": "COMPLETED"}, token=FORGED_TOKEN).status_code == 401
    assert _post(world, job, "result", {"outcome": "DONE"}).status_code == 422
    assert world.get(job["dispatch_id"]).status is Status.RUNNING


def test_failed_result_records_the_exit_code(world: World):
    job, _ = _job(world)
    assert (
        _post(world, job, "result", {"outcome": "FAILED", "exit_code": 3, "error": "exit 3"}).status_code
        == 200
    )
    record = world.get(job["dispatch_id"])
    assert (record.status, record.exit_code, record.error) == (Status.FAILED, 3, "exit 3")


def test_interrupted_result_requeues_until_attempts_run_out(world: World):
    job, _ = _job(world)
    reply = _post(world, job, "result", {"outcome": "INTERRUPTED", "error": "SIGTERM"})
    assert reply.status_code == 200 and reply.json()["status"] == "PENDING"
    record = world.get(job["dispatch_id"])
    assert record.attempt == 2 and record.enqueued and record.task_id is None
    for attempt in (2, 3):
        task, token = world.new_task()
        again = _claimed(world, token, task.task_id)
        assert (again["dispatch_id"], again["attempt"]) == (job["dispatch_id"], attempt)
        reply = _post(world, again, "result", {"outcome": "INTERRUPTED", "error": "SIGTERM"})
    assert reply.json()["status"] == "FAILED"
    assert "gave up after 3 attempts" in world.get(job["dispatch_id"]).error


def test_logs_are_appended_and_readable_through_the_api(world: World):
    job, _ = _job(world)
    assert _post(world, job, "logs", {"lines": ["one", "two"]}).status_code == 202
    assert _post(world, job, "logs", {"lines": ["three"]}).status_code == 202
    page = world.client.get(
        f"/dispatch/{job['dispatch_id']}/logs", headers={"Authorization": f"Bearer {world.api_key}"}
    ).json()
    assert page["lines"] == ["one", "two", "three"]
    assert _post(world, job, "logs", {"lines": ["x"] * 1001}).status_code == 422
    assert _post(world, job, "logs", {"lines": ["x"]}, token=FORGED_TOKEN).status_code == 401


def test_an_interruption_caused_by_a_cancel_does_not_requeue_the_job(world: World):
    job, task_id = _job(world)
    world.engine.task_control.stop_task(task_id, reason="cancelled by tenant")  # what DELETE does first
    reply = _post(world, job, "result", {"outcome": "INTERRUPTED", "error": "SIGTERM"})
    assert reply.status_code == 409
    record = world.get(job["dispatch_id"])
    assert record.status is Status.RUNNING and record.attempt == 1  # the canceller decides


def test_claims_are_counted_as_warm_pool_hits_or_cold_starts(world: World):
    waiting, waiting_token = world.new_task()  # in the pool before the job exists: a warm hit
    world.dispatch()
    assert world.claim(waiting_token, waiting.task_id).status_code == 200
    world.dispatch()
    launched, launched_token = world.new_task()  # started for the job: a cold start
    assert world.claim(launched_token, launched.task_id).status_code == 200
    assert world.engine.metrics.snapshot()["shell"] == {WARM_POOL_HITS: 1, COLD_STARTS: 1}


def test_internal_endpoints_answer_503_where_no_engine_runs(world: World):
    from fastapi.testclient import TestClient

    from control_plane.main import create_app

    bare = TestClient(create_app(world.settings, clients=world.clients))
    reply = bare.post("/internal/claim", json={"task_id": "t-1"}, headers={"Authorization": "Bearer t-1.x"})
    assert reply.status_code == 503


def _api(world: World, path: str):
    return world.client.get(path, headers={"Authorization": f"Bearer {world.api_key}"})


def test_a_job_token_is_refused_once_its_attempt_was_requeued(world: World):
    first, _ = _job(world)
    assert _post(world, first, "result", {"outcome": "INTERRUPTED", "error": "SIGTERM"}).status_code == 200
    for what, body in (("logs", {"lines": ["late"]}), ("uploads", {}), ("result", {"outcome": "COMPLETED"})):
        reply = _post(world, first, what, body)
        assert reply.status_code == 409, (what, reply.text)
        assert "attempt 1" in reply.json()["detail"]
    task, token = world.new_task()
    second = _claimed(world, token, task.task_id)
    assert second["attempt"] == 2
    assert _post(world, first, "logs", {"lines": ["late"]}).status_code == 409
    assert _post(world, first, "uploads", {}).status_code == 409
    assert _post(world, second, "logs", {"lines": ["attempt 2"]}).status_code == 202
    assert _api(world, f"/dispatch/{first['dispatch_id']}/logs").json()["lines"] == ["attempt 2"]


def test_a_job_token_is_refused_once_the_dispatch_ended(world: World):
    job, _ = _job(world)
    assert _post(world, job, "result", {"outcome": "COMPLETED", "exit_code": 0}).status_code == 200
    for what, body in (("logs", {"lines": ["after the end"]}), ("uploads", {})):
        reply = _post(world, job, what, body)
        assert reply.status_code == 409, (what, reply.text)
        assert "COMPLETED" in reply.json()["detail"]
    # the runner's repeated report of the same outcome is still answered 2xx
    assert _post(world, job, "result", {"outcome": "COMPLETED", "exit_code": 0}).status_code == 200
    assert _api(world, f"/dispatch/{job['dispatch_id']}/logs").json()["lines"] == []


def test_a_late_upload_of_an_earlier_attempt_never_replaces_the_final_bundle(world: World):
    first, _ = _job(world)
    stale = _uploads(world, first)  # attempt 1 is about to be interrupted
    assert _post(world, first, "result", {"outcome": "INTERRUPTED", "error": "SIGTERM"}).status_code == 200
    task, token = world.new_task()
    second = _claimed(world, token, task.task_id)
    for name, url in _uploads(world, second).items():
        assert httpx.put(url, content=f"attempt 2 {name}".encode()).status_code == 200
    assert _post(world, second, "result", {"outcome": "COMPLETED", "exit_code": 0}).status_code == 200
    # attempt 1's runner uploads late, through URLs S3 still honours
    assert httpx.put(stale["patch.diff"], content=b"attempt 1 patch.diff").status_code == 200

    record = world.get(first["dispatch_id"])
    assert record.attempt == 2 and sorted(record.artifacts) == sorted(stale)
    listed = _api(world, f"/dispatch/{first['dispatch_id']}/artifacts").json()["items"]
    assert sorted(item["name"] for item in listed) == sorted(stale)
    for item in listed:
        assert httpx.get(item["url"]).content == f"attempt 2 {item['name']}".encode()


def test_result_records_the_cost_and_tokens_of_the_summary(world: World):
    job, _ = _job(world)
    summary = {"tokens": {"input": 1200, "output": 340, "cached_input": None}, "cost_usd": 0.0421}
    reply = _post(world, job, "result", {"outcome": "COMPLETED", "exit_code": 0, "summary": summary})
    assert reply.status_code == 200, reply.text
    shown = _api(world, f"/dispatch/{job['dispatch_id']}").json()
    assert shown["tokens"] == {"input": 1200, "cached": None, "output": 340}
    assert (shown["cost_usd"], shown["cost_source"]) == (0.0421, "agent")


def test_a_job_without_usage_has_no_cost(world: World):
    job, _ = _job(world)
    summary = {"tokens": {"input": None, "output": None, "cached_input": None}, "cost_usd": None}
    assert (
        _post(world, job, "result", {"outcome": "FAILED", "exit_code": 1, "summary": summary}).status_code
        == 200
    )
    shown = _api(world, f"/dispatch/{job['dispatch_id']}").json()
    assert (shown["tokens"], shown["cost_usd"], shown["cost_source"]) == (None, None, None)


def test_a_result_with_a_bad_cost_is_refused_and_nothing_is_written(world: World):
    job, _ = _job(world)
    for summary in (
        {"cost_usd": -0.5},
        {"cost_usd": "0.5"},
        {"cost_usd": True},
        {"tokens": {"input": -1}},
        {"tokens": {"output": 1.5}},
        {"tokens": ["1200"]},
    ):
        reply = _post(world, job, "result", {"outcome": "COMPLETED", "exit_code": 0, "summary": summary})
        assert reply.status_code == 422, (summary, reply.text)
    # JSON's non-standard NaN, as Python's json module would send it
    raw = world.client.post(
        f"/internal/dispatches/{job['dispatch_id']}/result",
        content=b'{"outcome": "COMPLETED", "summary": {"cost_usd": NaN}}',
        headers={"Authorization": f"Bearer {job['job_token']}", "Content-Type": "application/json"},
    )
    assert raw.status_code == 422, raw.text
    record = world.get(job["dispatch_id"])
    assert record.status is Status.RUNNING and record.cost is None and record.summary is None


def test_a_claim_that_reaches_the_queue_after_its_poll_still_takes_a_waiting_job(world: World):
    # a loaded machine: authenticating and reading the task took longer than the whole poll
    record = world.dispatch()
    task, token = world.new_task()
    real = world.engine.claims.clock
    started = real()
    calls = iter(range(1_000_000))
    world.engine.claims.clock = lambda: (
        started if next(calls) == 0 else real() + world.engine.claims.long_poll_s
    )
    try:
        reply = world.claim(token, task.task_id)
    finally:
        world.engine.claims.clock = real
    assert reply.status_code == 200, reply.text
    assert reply.json()["dispatch_id"] == record.dispatch_id
