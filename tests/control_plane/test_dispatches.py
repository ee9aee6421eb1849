"""POST/GET/DELETE /dispatch, GET /dispatches, logs and artifacts, through the API."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from control_plane.lifecycle import Status
from control_plane.store import Actor, Stores
from tests.control_plane.helpers import RecordingTaskControl, make_tenant

SYSTEM = Actor.system("test")


def _create(client: TestClient, tenant: dict, **body: Any) -> dict[str, Any]:
    reply = client.post(
        "/dispatch", json={"agent": "shell", "task": "echo hi", **body}, headers=tenant["headers"]
    )
    assert reply.status_code == 202, reply.text
    created: dict[str, Any] = reply.json()
    return created


def _stores(client: TestClient) -> Stores:
    stores: Stores = client.app.state.stores  # type: ignore[attr-defined]
    return stores


def test_create_dispatch_records_pending_and_enqueues(
    client: TestClient, tenant: dict, settings: Any
) -> None:
    reply = client.post(
        "/dispatch",
        json={
            "agent": "shell",
            "task": "make test",
            "repo": {"url": "https://github.com/outpost/demo.git", "ref": "main"},
            "timeout_s": 120,
            "labels": {"ci": "yes"},
        },
        headers=tenant["headers"],
    )
    assert reply.status_code == 202
    body = reply.json()
    assert body["dispatch_id"].startswith("d-")
    assert reply.headers["location"] == f"/dispatch/{body['dispatch_id']}"
    assert (body["status"], body["attempt"], body["version"], body["timeout_s"]) == ("PENDING", 1, 1, 120)
    assert body["repo"] == {"url": "https://github.com/outpost/demo.git", "ref": "main"}
    record = _stores(client).dispatches.get(dispatch_id=body["dispatch_id"], tenant_id=None)
    assert record is not None and record.enqueued
    sqs = client.app.state.clients.sqs  # type: ignore[attr-defined]
    messages = []
    for _ in range(5):
        reply_q = sqs.receive_message(QueueUrl=settings.dispatch_queue_urls["shell"], MaxNumberOfMessages=10)
        messages += [json.loads(m["Body"]) for m in reply_q.get("Messages", [])]
        if any(m["dispatch_id"] == body["dispatch_id"] for m in messages):
            break
    assert {
        "dispatch_id": body["dispatch_id"],
        "tenant_id": tenant["tenant_id"],
        "agent": "shell",
        "attempt": 1,
    } in (messages)


def test_create_dispatch_defaults_timeout_to_agents(client: TestClient, tenant: dict) -> None:
    assert _create(client, tenant)["timeout_s"] == 600  # the shell agent's default


def test_get_dispatch_shows_status_object(client: TestClient, tenant: dict) -> None:
    created = _create(client, tenant)
    _stores(client).dispatches.transition(
        dispatch_id=created["dispatch_id"], to=Status.RUNNING, actor=SYSTEM, changes={"task_id": "task-1"}
    )
    _stores(client).dispatches.transition(
        dispatch_id=created["dispatch_id"],
        to=Status.COMPLETED,
        actor=SYSTEM,
        changes={"exit_code": 0, "artifacts": ["patch.diff"], "cost": {"usd": 0.25, "input_tokens": 900}},
    )
    body = client.get(f"/dispatch/{created['dispatch_id']}", headers=tenant["headers"]).json()
    assert body["status"] == "COMPLETED"
    assert set(body["timestamps"]) == {"PENDING", "RUNNING", "COMPLETED"}
    assert (body["exit_code"], body["artifacts"], body["version"]) == (0, ["patch.diff"], 3)
    assert body["tokens"] == {"input": 900, "cached": None, "output": None}
    assert (body["cost_usd"], body["cost_source"]) == (0.25, "agent")


def test_get_dispatch_unknown_answers_problem_404(client: TestClient, tenant: dict) -> None:
    reply = client.get("/dispatch/d-nothing", headers=tenant["headers"])
    assert reply.status_code == 404
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["status"] == 404


def test_cancel_pending_dispatch_at_once(
    client: TestClient, tenant: dict, task_control: RecordingTaskControl
) -> None:
    created = _create(client, tenant)
    reply = client.delete(f"/dispatch/{created['dispatch_id']}", headers=tenant["headers"])
    assert reply.status_code == 200
    assert reply.json()["status"] == "CANCELLED"
    assert task_control.stopped == []  # nothing was running


def test_cancel_running_dispatch_stops_its_task(
    client: TestClient, tenant: dict, task_control: RecordingTaskControl
) -> None:
    created = _create(client, tenant)
    _stores(client).dispatches.transition(
        dispatch_id=created["dispatch_id"], to=Status.RUNNING, actor=SYSTEM, changes={"task_id": "task-42"}
    )
    reply = client.delete(f"/dispatch/{created['dispatch_id']}", headers=tenant["headers"])
    assert reply.status_code == 200
    assert reply.json()["status"] == "CANCELLED"
    assert [task for task, _ in task_control.stopped] == ["task-42"]


def test_cancel_running_dispatch_without_runtime_answers_503_and_keeps_it_running(
    settings: Any, aws_clients: Any, tenant: dict, client: TestClient
) -> None:
    from control_plane.main import create_app

    created = _create(client, tenant)
    _stores(client).dispatches.transition(
        dispatch_id=created["dispatch_id"], to=Status.RUNNING, actor=SYSTEM, changes={"task_id": "task-7"}
    )
    with TestClient(create_app(settings, clients=aws_clients)) as bare:
        reply = bare.delete(f"/dispatch/{created['dispatch_id']}", headers=tenant["headers"])
    assert reply.status_code == 503
    assert (
        client.get(f"/dispatch/{created['dispatch_id']}", headers=tenant["headers"]).json()["status"]
        == "RUNNING"
    )


def test_cancel_finished_dispatch_answers_409(client: TestClient, tenant: dict) -> None:
    created = _create(client, tenant)
    _stores(client).dispatches.transition(dispatch_id=created["dispatch_id"], to=Status.FAILED, actor=SYSTEM)
    reply = client.delete(f"/dispatch/{created['dispatch_id']}", headers=tenant["headers"])
    assert reply.status_code == 409
    assert "FAILED" in reply.json()["detail"]


def test_cancel_cancelled_dispatch_is_idempotent(client: TestClient, tenant: dict) -> None:
    created = _create(client, tenant)
    first = client.delete(f"/dispatch/{created['dispatch_id']}", headers=tenant["headers"]).json()
    second = client.delete(f"/dispatch/{created['dispatch_id']}", headers=tenant["headers"])
    assert second.status_code == 200
    assert second.json()["version"] == first["version"] == 2


def test_list_dispatches_newest_first_with_cursor(client: TestClient) -> None:
    tenant = make_tenant(client, max_queued=50)
    ids = [_create(client, tenant, task=f"echo {i}")["dispatch_id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(f"/dispatches{query}", headers=tenant["headers"]).json()
        seen += [d["dispatch_id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))


def test_list_dispatches_filters_by_status_and_agent(client: TestClient) -> None:
    tenant = make_tenant(client)
    shell = _create(client, tenant)["dispatch_id"]
    claude = _create(client, tenant, agent="claude", task="fix the bug")["dispatch_id"]
    cancelled = _create(client, tenant)["dispatch_id"]
    client.delete(f"/dispatch/{cancelled}", headers=tenant["headers"])

    def listed(query: str) -> list[str]:
        return [
            d["dispatch_id"]
            for d in client.get(f"/dispatches?{query}", headers=tenant["headers"]).json()["items"]
        ]

    assert listed("status=PENDING") == [claude, shell]
    assert listed("agent=claude") == [claude]
    assert listed("status=PENDING&agent=shell") == [shell]
    assert listed("status=CANCELLED") == [cancelled]


def test_list_dispatches_refuses_forged_cursor(client: TestClient, tenant: dict, other_tenant: dict) -> None:
    for _ in range(3):
        _create(client, tenant)
    page = client.get("/dispatches?limit=1", headers=tenant["headers"]).json()
    cursor = page["next_cursor"]
    assert cursor
    # another tenant replaying it, a changed filter, and a tampered body are all refused
    assert client.get(f"/dispatches?cursor={cursor}", headers=other_tenant["headers"]).status_code == 400
    assert (
        client.get(f"/dispatches?status=PENDING&cursor={cursor}", headers=tenant["headers"]).status_code
        == 400
    )
    body, mac = cursor.split(".")
    forged = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac
    reply = client.get(f"/dispatches?cursor={forged}", headers=tenant["headers"])
    assert reply.status_code == 400
    assert reply.json()["field"] == "cursor"


def test_list_dispatches_refuses_bad_status(client: TestClient, tenant: dict) -> None:
    reply = client.get("/dispatches?status=DONE", headers=tenant["headers"])
    assert reply.status_code == 422
    assert reply.json()["field"] == "query.status"


def test_get_logs_returns_appended_lines_in_order(client: TestClient, tenant: dict) -> None:
    created = _create(client, tenant)
    logs = _stores(client).logs
    logs.append(tenant_id=tenant["tenant_id"], dispatch_id=created["dispatch_id"], lines=["one", "two"])
    logs.append(tenant_id=tenant["tenant_id"], dispatch_id=created["dispatch_id"], lines=["three"])
    page = client.get(f"/dispatch/{created['dispatch_id']}/logs", headers=tenant["headers"]).json()
    assert page == {"lines": ["one", "two", "three"], "next_chunk": 2, "finished": False}
    logs.append(tenant_id=tenant["tenant_id"], dispatch_id=created["dispatch_id"], lines=["four"])
    newer = client.get(f"/dispatch/{created['dispatch_id']}/logs?after=2", headers=tenant["headers"]).json()
    assert newer["lines"] == ["four"]


def test_follow_logs_streams_until_dispatch_ends(client: TestClient, tenant: dict) -> None:
    created = _create(client, tenant)
    _stores(client).logs.append(
        tenant_id=tenant["tenant_id"], dispatch_id=created["dispatch_id"], lines=["a"]
    )
    _stores(client).dispatches.transition(
        dispatch_id=created["dispatch_id"], to=Status.CANCELLED, actor=SYSTEM
    )
    reply = client.get(f"/dispatch/{created['dispatch_id']}/logs?follow=true", headers=tenant["headers"])
    assert reply.headers["content-type"].startswith("application/x-ndjson")
    events = [json.loads(line) for line in reply.text.splitlines()]
    assert events[-1]["finished"] is True
    assert [line for event in events for line in event["lines"]] == ["a"]


def test_list_artifacts_gives_download_urls(client: TestClient, tenant: dict, settings: Any) -> None:
    created = _create(client, tenant)
    s3 = client.app.state.clients.s3  # type: ignore[attr-defined]
    prefix = f"tenants/{tenant['tenant_id']}/dispatches/{created['dispatch_id']}/attempt-1/"
    s3.put_object(Bucket=settings.artifacts_bucket, Key=prefix + "patch.diff", Body=b"--- a\n+++ b\n")
    items = client.get(f"/dispatch/{created['dispatch_id']}/artifacts", headers=tenant["headers"]).json()[
        "items"
    ]
    assert [(a["name"], a["size"]) for a in items] == [("patch.diff", 12)]
    import httpx

    assert httpx.get(items[0]["url"]).content == b"--- a\n+++ b\n"


def test_openapi_lists_every_endpoint(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/dispatch", "/dispatch/{dispatch_id}", "/dispatches", "/dispatch/{dispatch_id}/logs",
                 "/dispatch/{dispatch_id}/artifacts", "/health", "/health/live", "/health/ready",
                 "/health/fleet", "/tenants", "/tenants/{tenant_id}", "/tenants/{tenant_id}/api-key"):  # fmt: skip
        assert path in paths


def test_follow_logs_delivers_lines_written_while_following(client: TestClient, tenant: dict) -> None:
    import threading
    import time

    created = _create(client, tenant)
    stores = _stores(client)
    stores.dispatches.transition(dispatch_id=created["dispatch_id"], to=Status.RUNNING, actor=SYSTEM)

    def runner() -> None:
        for n in range(3):
            time.sleep(0.3)
            stores.logs.append(
                tenant_id=tenant["tenant_id"], dispatch_id=created["dispatch_id"], lines=[f"step {n}"]
            )
        stores.dispatches.transition(dispatch_id=created["dispatch_id"], to=Status.COMPLETED, actor=SYSTEM)

    thread = threading.Thread(target=runner)
    thread.start()
    with client.stream(
        "GET", f"/dispatch/{created['dispatch_id']}/logs?follow=true", headers=tenant["headers"]
    ) as r:
        events = [json.loads(line) for line in r.iter_lines() if line]
    thread.join()
    assert [line for event in events for line in event["lines"]] == ["step 0", "step 1", "step 2"]
    assert events[-1]["finished"] is True


def test_cancel_concurrently_applies_once(client: TestClient, tenant: dict) -> None:
    import threading

    created = _create(client, tenant)
    replies: list[Any] = []
    barrier = threading.Barrier(10)

    def cancel() -> None:
        barrier.wait()
        replies.append(client.delete(f"/dispatch/{created['dispatch_id']}", headers=tenant["headers"]))

    threads = [threading.Thread(target=cancel) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {r.status_code for r in replies} == {200}
    assert {(r.json()["status"], r.json()["version"]) for r in replies} == {("CANCELLED", 2)}
    audit = _stores(client).audit.list(tenant_id=tenant["tenant_id"], limit=500)
    assert [a["action"] for a in audit if a["target"] == created["dispatch_id"]].count(
        "dispatch.transition"
    ) == 1


def test_openapi_documents_problem_details(client: TestClient) -> None:
    post = client.get("/openapi.json").json()["paths"]["/dispatch"]["post"]
    for status in ("401", "413", "422", "429"):
        assert "application/problem+json" in post["responses"][status]["content"]


def test_cancel_running_dispatch_when_stop_fails_answers_503_and_keeps_it_running(
    settings: Any, aws_clients: Any, tenant: dict, client: TestClient
) -> None:
    from control_plane.main import create_app

    class FailingControl(RecordingTaskControl):
        def stop_task(self, task_id: str, *, reason: str) -> None:
            raise ConnectionError("ECS endpoint unreachable")

    created = _create(client, tenant)
    _stores(client).dispatches.transition(
        dispatch_id=created["dispatch_id"], to=Status.RUNNING, actor=SYSTEM, changes={"task_id": "task-9"}
    )
    with TestClient(create_app(settings, clients=aws_clients, task_control=FailingControl())) as failing:
        reply = failing.delete(f"/dispatch/{created['dispatch_id']}", headers=tenant["headers"])
    assert reply.status_code == 503
    assert "ECS" not in reply.text  # internals stay in the log
    assert (
        client.get(f"/dispatch/{created['dispatch_id']}", headers=tenant["headers"]).json()["status"]
        == "RUNNING"
    )
