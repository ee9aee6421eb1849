"""Tokens and cost on dispatches (GET /dispatch, /dispatches) and GET /usage, through the API."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from control_plane.api.routes.usage import DEFAULT_DAYS, MAX_DAYS
from control_plane.lifecycle import Status
from control_plane.store import Actor, DispatchRecord, Stores
from control_plane.store.codec import iso
from control_plane.store.dispatches import new_dispatch_id
from control_plane.usage import model_used, record_cost

SYSTEM = Actor.system("test")
TODAY = datetime.now(UTC).date()


def _stores(client: TestClient) -> Stores:
    stores: Stores = client.app.state.stores  # type: ignore[attr-defined]
    return stores


def _finished(
    client: TestClient, tenant: dict, *, cost: dict[str, Any] | None, agent: str = "codex", day: date = TODAY
) -> str:
    """A dispatch created on ``day`` that ended COMPLETED with ``cost`` (as the result report writes it)."""
    stores = _stores(client)
    created = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=23, minutes=59)
    record = stores.dispatches.create(
        record=DispatchRecord(
            dispatch_id=new_dispatch_id(),
            tenant_id=tenant["tenant_id"],
            agent=agent,
            task="t",
            timeout_s=60,
            created_at=iso(created),
        ),
        actor=SYSTEM,
    )
    stores.dispatches.transition(
        dispatch_id=record.dispatch_id, to=Status.RUNNING, actor=SYSTEM, changes={"task_id": "task-1"}
    )
    stores.dispatches.transition(
        dispatch_id=record.dispatch_id, to=Status.COMPLETED, actor=SYSTEM, changes={"cost": cost}
    )
    return record.dispatch_id


def _summary(*, input: int | None, cached: int | None, output: int | None, usd: float | None = None) -> dict:
    return {"tokens": {"input": input, "cached_input": cached, "output": output}, "cost_usd": usd}


def test_record_cost_prefers_the_agents_own_figure() -> None:
    cost = record_cost(_summary(input=1000, cached=100, output=50, usd=0.5), model="gpt-5")
    assert cost == {
        "usd": 0.5,
        "input_tokens": 1000,
        "cached_input_tokens": 100,
        "output_tokens": 50,
        "source": "agent",
        "model": "gpt-5",
    }


def test_record_cost_computes_from_the_price_table_by_model_and_tokens() -> None:
    cost = record_cost(_summary(input=1_000_000, cached=200_000, output=100_000), model="gpt-5")
    assert cost is not None and (cost["usd"], cost["source"]) == (2.025, "price-table")


@pytest.mark.parametrize(
    ("summary", "model"),
    [
        (_summary(input=1000, cached=0, output=10), None),  # the CLI's own default model: unknown
        (_summary(input=1000, cached=0, output=10), "a-model-without-a-price"),
        (_summary(input=1000, cached=0, output=None), "gpt-5"),  # tokens only in part
    ],
)
def test_record_cost_without_a_price_keeps_the_tokens_and_no_cost(summary: dict, model: str | None) -> None:
    cost = record_cost(summary, model=model)
    assert cost is not None and cost["input_tokens"] == 1000
    assert "usd" not in cost and "source" not in cost


def test_record_cost_of_a_run_that_reported_nothing_is_none() -> None:
    assert record_cost(_summary(input=None, cached=None, output=None), model="gpt-5") is None
    assert record_cost({}, model="gpt-5") is None


def test_get_and_list_show_tokens_cost_and_where_the_cost_came_from(client: TestClient, tenant: dict) -> None:
    computed = record_cost(_summary(input=1_000_000, cached=200_000, output=100_000), model="gpt-5")
    priced = _finished(client, tenant, cost=computed)
    reported = _finished(
        client, tenant, cost=record_cost(_summary(input=10, cached=0, output=5, usd=0.01), model=None)
    )
    unpriced = _finished(client, tenant, cost=record_cost(_summary(input=10, cached=2, output=5), model=None))
    nothing = _finished(client, tenant, cost=None)

    shown = {
        d: client.get(f"/dispatch/{d}", headers=tenant["headers"]).json()
        for d in (priced, reported, unpriced, nothing)
    }
    listed = {
        i["dispatch_id"]: i for i in client.get("/dispatches", headers=tenant["headers"]).json()["items"]
    }
    for dispatch_id, body in shown.items():
        keys = ("tokens", "cost_usd", "cost_source")
        assert {k: listed[dispatch_id][k] for k in keys} == {k: body[k] for k in keys}
    assert shown[priced]["tokens"] == {"input": 1_000_000, "cached": 200_000, "output": 100_000}
    assert (shown[priced]["cost_usd"], shown[priced]["cost_source"]) == (2.025, "price-table")
    assert (shown[reported]["cost_usd"], shown[reported]["cost_source"]) == (0.01, "agent")
    assert shown[unpriced]["tokens"] == {"input": 10, "cached": 2, "output": 5}
    assert (shown[unpriced]["cost_usd"], shown[unpriced]["cost_source"]) == (None, None)
    assert (shown[nothing]["tokens"], shown[nothing]["cost_usd"], shown[nothing]["cost_source"]) == (
        None,
        None,
        None,
    )


def test_usage_sums_tokens_and_cost_by_day_and_agent(client: TestClient, tenant: dict) -> None:
    yesterday = TODAY - timedelta(days=1)
    _finished(
        client,
        tenant,
        cost=record_cost(_summary(input=100, cached=10, output=20, usd=0.25), model=None),
        agent="claude",
    )
    _finished(
        client,
        tenant,
        cost=record_cost(_summary(input=300, cached=30, output=40, usd=0.5), model=None),
        agent="claude",
    )
    _finished(client, tenant, cost=record_cost(_summary(input=1_000_000, cached=0, output=0), model="gpt-5"))
    _finished(
        client, tenant, cost=record_cost(_summary(input=7, cached=0, output=3), model=None), day=yesterday
    )
    _finished(client, tenant, cost=None)  # a run that reported nothing is not counted
    _finished(
        client,
        tenant,
        cost=record_cost(_summary(input=5, cached=0, output=5, usd=9.0), model=None),
        day=TODAY - timedelta(days=40),
    )

    reply = client.get("/usage", params={"since": yesterday.isoformat()}, headers=tenant["headers"])

    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["since"], body["until"]) == (yesterday.isoformat(), TODAY.isoformat())
    rows = [
        (r["day"], r["agent"], r["dispatches"], r["tokens"], r["cost_usd"], r["unpriced"])
        for r in body["days"]
    ]
    assert rows == [
        (yesterday.isoformat(), "codex", 1, {"input": 7, "cached": 0, "output": 3}, 0.0, 1),
        (TODAY.isoformat(), "claude", 2, {"input": 400, "cached": 40, "output": 60}, 0.75, 0),
        (TODAY.isoformat(), "codex", 1, {"input": 1_000_000, "cached": 0, "output": 0}, 1.25, 0),
    ]
    total = body["total"]
    assert (total["day"], total["agent"], total["dispatches"], total["cost_usd"], total["unpriced"]) == (
        None, None, 4, 2.0, 1,
    )  # fmt: skip
    assert total["tokens"] == {"input": 1_000_407, "cached": 40, "output": 63}


def test_usage_defaults_to_the_last_thirty_days_and_counts_their_edges(
    client: TestClient, tenant: dict
) -> None:
    first = TODAY - timedelta(days=DEFAULT_DAYS - 1)
    _finished(
        client,
        tenant,
        cost=record_cost(_summary(input=1, cached=0, output=1, usd=1.0), model=None),
        day=first,
    )
    _finished(
        client,
        tenant,
        cost=record_cost(_summary(input=1, cached=0, output=1, usd=2.0), model=None),
        day=first - timedelta(days=1),
    )
    body = client.get("/usage", headers=tenant["headers"]).json()
    assert (body["since"], body["until"]) == (first.isoformat(), TODAY.isoformat())
    assert [(r["day"], r["cost_usd"]) for r in body["days"]] == [(first.isoformat(), 1.0)]


def test_usage_is_the_callers_own(client: TestClient, tenant: dict, other_tenant: dict) -> None:
    _finished(
        client, other_tenant, cost=record_cost(_summary(input=1, cached=0, output=1, usd=5.0), model=None)
    )
    _finished(client, tenant, cost=record_cost(_summary(input=1, cached=0, output=1, usd=1.0), model=None))
    mine = client.get("/usage", headers=tenant["headers"]).json()
    theirs = client.get("/usage", headers=other_tenant["headers"]).json()
    assert (mine["total"]["cost_usd"], theirs["total"]["cost_usd"]) == (1.0, 5.0)


def test_usage_reads_only_the_tenants_index_partition(client: TestClient, tenant: dict) -> None:
    """A spy around the store's DynamoDB client (the calls still reach the emulator)."""
    store = _stores(client).usage
    calls: list[tuple[str, dict[str, Any]]] = []
    real = store._client

    class Spy:
        def __getattr__(self, name: str) -> Any:
            method = getattr(real, name)
            return lambda **kwargs: calls.append((name, kwargs)) or method(**kwargs)

    store._client = Spy()
    try:
        assert client.get("/usage", headers=tenant["headers"]).status_code == 200
    finally:
        store._client = real
    assert [name for name, _ in calls] == ["query"]
    assert calls[0][1]["IndexName"] == "by-tenant"
    assert calls[0][1]["ExpressionAttributeValues"][":t"] == {"S": tenant["tenant_id"]}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": TODAY.isoformat(), "until": (TODAY - timedelta(days=1)).isoformat()}, "since"),
        ({"since": (TODAY - timedelta(days=MAX_DAYS)).isoformat(), "until": TODAY.isoformat()}, "since"),
        ({"since": "2026-13-01"}, "since"),
        ({"until": "yesterday"}, "until"),
        ({"since": "2026-12-01T10:30:00"}, "since"),
    ],
)
def test_usage_refuses_a_bad_or_unbounded_range(
    client: TestClient, tenant: dict, params: dict, field: str
) -> None:
    reply = client.get("/usage", params=params, headers=tenant["headers"])
    assert reply.status_code == 422, reply.text
    assert field in reply.text


def test_usage_accepts_the_longest_range(client: TestClient, tenant: dict) -> None:
    params = {"since": (TODAY - timedelta(days=MAX_DAYS - 1)).isoformat(), "until": TODAY.isoformat()}
    assert client.get("/usage", params=params, headers=tenant["headers"]).status_code == 200


def test_usage_needs_a_tenant_key(client: TestClient, admin_headers: dict) -> None:
    assert client.get("/usage").status_code == 401
    assert client.get("/usage", headers=admin_headers).status_code == 403


def test_the_model_used_is_the_reported_one_else_the_dispatchs_else_the_agents_default() -> None:
    record = DispatchRecord(dispatch_id="d-1", tenant_id="t", agent="codex", task="t", timeout_s=60)
    assert model_used(record, {"model": "gpt-5.4"}, default="gpt-5") == "gpt-5.4"
    assert model_used(record, {}, default="gpt-5") == "gpt-5"
    assert model_used(record, {"model": None}, default=None) is None
    chosen = DispatchRecord(**{**vars(record), "model": "gpt-5-mini"})
    assert model_used(chosen, {}, default="gpt-5") == "gpt-5-mini"
