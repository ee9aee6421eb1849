"""Model spend budgets (control_plane/budgets.py): per tenant per day and month, per dispatch,
against the emulator's DynamoDB. The gateway calls `refusal` before and `charge` after each
model call; a spent budget ends the dispatch FAILED with reason budget-exceeded and stops its task."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from control_plane.budgets import Budgets
from control_plane.engine import tasks as t
from control_plane.lifecycle import Status
from tests.engine.conftest import ADMIN_KEY, World


def _budget(world: World, **limits: float | None) -> None:
    reply = world.client.patch(
        f"/tenants/{world.tenant_id}", json=limits, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert reply.status_code == 200, reply.text
    for name, value in limits.items():
        assert reply.json()[name] == value


def _running(world: World) -> tuple[str, str]:
    record = world.dispatch("sleep 600")
    task, token = world.new_task()
    assert world.claim(token, task.task_id).status_code == 200
    assert world.get(record.dispatch_id).status is Status.RUNNING
    return record.dispatch_id, task.task_id


def _call(world: World, budgets: Budgets, dispatch_id: str, cost_usd: float) -> str | None:
    """What the gateway's accounting does after a priced call: the dispatch's totals first
    (its gw_usd is the dispatch's spend), then the tenant's counters and the budget check."""
    spent = world.stores.dispatches.add_gateway_usage(
        dispatch_id=dispatch_id,
        input_tokens=1,
        cached_input_tokens=0,
        output_tokens=1,
        cost_usd=cost_usd,
        model=None,
    )
    assert spent is not None
    return budgets.charge(world.tenant_id, dispatch_id, cost_usd, spent)


def _fresh(world: World) -> Budgets:
    """Another replica's view: no cache shared with the engine's."""
    return Budgets(
        client=world.clients.dynamodb,
        table=world.settings.dispatches_table,
        tenant=lambda tenant_id: world.stores.tenants.get(tenant_id=tenant_id),
    )


def test_a_call_that_spends_the_dispatch_budget_ends_it_failed_and_stops_its_task(world: World) -> None:
    _budget(world, budget_dispatch_usd=0.05)
    dispatch_id, task_id = _running(world)
    budgets = world.engine.budgets
    assert budgets.refusal(world.tenant_id, dispatch_id) is None
    assert _call(world, budgets, dispatch_id, 0.03) is None
    assert world.get(dispatch_id).status is Status.RUNNING
    message = _call(world, budgets, dispatch_id, 0.03)
    assert message is not None and "dispatch's budget of $0.05" in message
    ended = world.get(dispatch_id)
    assert (ended.status, ended.error) == (Status.FAILED, message)
    assert world.tasks.get(task_id).state in (t.STOPPING, t.STOPPED)
    # the next call of that dispatch is refused, and the tenant's other work is not
    assert budgets.refusal(world.tenant_id, dispatch_id) is not None
    other, _ = _running(world)
    assert budgets.refusal(world.tenant_id, other) is None


def test_a_spent_daily_budget_refuses_new_dispatches_and_running_calls(world: World) -> None:
    _budget(world, budget_daily_usd=1.0, budget_monthly_usd=100.0)
    dispatch_id, _ = _running(world)
    assert _call(world, world.engine.budgets, dispatch_id, 0.4) is None
    second, _ = _running(world)
    # 0.4 + 0.7 crosses the day's dollar: the call that crossed it ends its own dispatch
    assert "daily budget of $1 " in (_call(world, world.engine.budgets, second, 0.7) or "")
    assert world.get(second).status is Status.FAILED
    # the first dispatch's next call is refused and ends it too
    assert world.engine.budgets.refusal(world.tenant_id, dispatch_id) is not None
    assert world.get(dispatch_id).status is Status.FAILED
    # and the API takes no new work today
    reply = world.client.post(
        "/dispatch",
        json={"agent": "shell", "task": "true"},
        headers={"Authorization": f"Bearer {world.api_key}"},
    )
    assert reply.status_code == 429 and reply.json()["type"].endswith("/budget-exceeded"), reply.text
    assert "daily budget" in reply.json()["detail"]
    assert _fresh(world).spent(world.tenant_id)["day"] == 1.1


def test_concurrent_charges_are_all_counted(world: World) -> None:
    _budget(world, budget_monthly_usd=1000.0)
    dispatch_id, _ = _running(world)
    budgets = _fresh(world)

    def charge() -> None:
        for _ in range(10):
            _call(world, budgets, dispatch_id, 0.01)

    threads = [threading.Thread(target=charge) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spent = budgets.spent(world.tenant_id, dispatch_id)
    assert round(spent["month"], 6) == round(spent["dispatch"], 6) == 0.4


def test_days_and_months_are_counted_apart(world: World) -> None:
    _budget(world, budget_daily_usd=1.0)
    dispatch_id, _ = _running(world)
    clock = [datetime(2026, 12, 31, 23, 59, tzinfo=UTC)]
    budgets = Budgets(
        client=world.clients.dynamodb,
        table=world.settings.dispatches_table,
        tenant=lambda tenant_id: world.stores.tenants.get(tenant_id=tenant_id),
        clock=lambda: clock[0],
    )
    assert _call(world, budgets, dispatch_id, 0.9) is None
    clock[0] = datetime(2027, 1, 1, 0, 1, tzinfo=UTC)  # a new day, and a new month
    assert _call(world, budgets, dispatch_id, 0.9) is None
    assert budgets.spent(world.tenant_id) == {"day": 0.9, "month": 0.9}


def test_a_tenant_without_budgets_reads_no_counter(world: World) -> None:
    dispatch_id, _ = _running(world)
    calls: list[str] = []
    client = world.clients.dynamodb
    budgets = Budgets(
        client=type(
            "Counting",
            (),
            {
                "get_item": lambda _, **kw: calls.append("get") or client.get_item(**kw),
                "batch_get_item": lambda _, **kw: calls.append("batch") or client.batch_get_item(**kw),
            },
        )(),
        table=world.settings.dispatches_table,
        tenant=lambda tenant_id: world.stores.tenants.get(tenant_id=tenant_id),
    )
    assert budgets.refusal(world.tenant_id, dispatch_id) is None
    assert calls == []  # the common case costs one cached tenant read, no counter read
