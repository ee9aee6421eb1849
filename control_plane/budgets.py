"""Model spend budgets: per tenant per UTC day and per UTC month, and per dispatch, in dollars.

The model gateway (control_plane/gateway) prices every call it passes through and asks this
module twice:

- before forwarding, ``refusal(tenant_id, dispatch_id)``: a message when the tenant's day or
  month, or the dispatch, has already spent its budget. The call is then refused, and the
  dispatch (if it is still running) ends FAILED with reason ``budget-exceeded``: an agent that
  cannot reach its model can do nothing more, and a clear reason beats an agent's own error;
- after the call, ``charge(tenant_id, dispatch_id, cost_usd, dispatch_spent)``: the cost is
  added to the tenant's day and month counters (the dispatch's own total is its ``gw_usd``,
  which the gateway has just added to, ``dispatch_spent``); when that call took the tenant or
  the dispatch over a budget, the dispatch ends the same way (a call already under way is never
  cut: a budget is checked between calls, so one call can overshoot it by its own cost).

``POST /dispatch`` asks ``refusal(tenant_id)`` too: a tenant over its day or month budget gets
429 and nothing is created.

The tenant counters are auxiliary items of the dispatches table (``spend#...`` keys, as the
other counters there; a dispatch's spend is its own item's ``gw_usd``) updated with DynamoDB's atomic ADD, so concurrent calls of many replicas
never lose an addition; they expire with the table's TTL after ``COUNTER_TTL_DAYS``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from control_plane.store.codec import batch_get, encode
from control_plane.store.tenants import TenantRecord

REASON = "budget-exceeded"  # the dispatch's failure reason (control_plane.metrics)
COUNTER_TTL_DAYS = 400  # a month's counter outlives its month by a year: usage questions
TENANT_CACHE_S = 5.0  # a changed budget applies within this long on every replica


def day_key(tenant_id: str, at: datetime) -> str:
    return f"spend#{tenant_id}#day#{at:%Y-%m-%d}"


def month_key(tenant_id: str, at: datetime) -> str:
    return f"spend#{tenant_id}#month#{at:%Y-%m}"


class Budgets:
    def __init__(
        self,
        *,
        client: Any,
        table: str,
        tenant: Callable[[str], TenantRecord | None],
        on_exceeded: Callable[[str, str], None] = lambda dispatch_id, message: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``tenant``: reads a tenant (TenantStore.get); ``on_exceeded(dispatch_id, message)``
        ends a dispatch FAILED with reason budget-exceeded (the engine's)."""
        self._client = client
        self._table = table
        self._tenant = tenant
        self._on_exceeded = on_exceeded
        self._clock = clock
        self._cache: dict[str, tuple[float, TenantRecord | None]] = {}
        self._lock = threading.Lock()

    # -- what the gateway and the API call -------------------------------------------------

    def refusal(self, tenant_id: str, dispatch_id: str | None = None) -> str | None:
        """Why no more model spend is allowed now (and the dispatch was ended), or None."""
        limits = self._limits(tenant_id)
        if limits is None:
            return None
        spent = self.spent(tenant_id, dispatch_id)
        message = self._over(limits, day=spent["day"], month=spent["month"], dispatch=spent.get("dispatch"))
        if message and dispatch_id:
            self._on_exceeded(dispatch_id, message)
        return message

    def charge(self, tenant_id: str, dispatch_id: str, cost_usd: float, dispatch_spent: float) -> str | None:
        """Adds a call's cost to the tenant's counters; a message (and the dispatch ended) when
        the tenant, or the dispatch at ``dispatch_spent`` (its total with this call), went over
        a budget."""
        if cost_usd <= 0:
            return None
        at = self._clock()
        expires = int(time.time()) + COUNTER_TTL_DAYS * 86_400
        day, month = (
            self._add(key, cost_usd, expires) for key in (day_key(tenant_id, at), month_key(tenant_id, at))
        )
        limits = self._limits(tenant_id)
        if limits is None:
            return None
        message = self._over(limits, day=day, month=month, dispatch=dispatch_spent)
        if message:
            self._on_exceeded(dispatch_id, message)
        return message

    def applies(self, tenant_id: str) -> bool:
        """Whether the tenant has any budget (a cached read)."""
        return self._limits(tenant_id) is not None

    def applies_known(self, tenant_id: str) -> bool | None:
        """``applies`` when the cache answers it without a read, else None (the model gateway
        decides on its event loop whether a call needs the budget check)."""
        with self._lock:
            cached = self._cache.get(tenant_id)
        if cached is None or time.monotonic() - cached[0] > TENANT_CACHE_S:
            return None
        return cached[1] is not None and cached[1].has_budget()

    def spent(self, tenant_id: str, dispatch_id: str | None = None) -> dict[str, float]:
        """What the day, the month (and the dispatch) have spent so far, in dollars."""
        at = self._clock()
        keys = {"day": day_key(tenant_id, at), "month": month_key(tenant_id, at)}
        if dispatch_id:
            keys["dispatch"] = dispatch_id  # the dispatch's own item: its gw_usd
        totals = self._read(list(keys.values()))
        return {name: totals.get(key, 0.0) for name, key in keys.items()}

    # -- internals ---------------------------------------------------------------------------

    @staticmethod
    def _over(limits: TenantRecord, *, day: float, month: float, dispatch: float | None) -> str | None:
        checks = [
            ("the tenant's daily budget", limits.budget_daily_usd, day),
            ("the tenant's monthly budget", limits.budget_monthly_usd, month),
        ]
        if dispatch is not None:
            checks.append(("the dispatch's budget", limits.budget_dispatch_usd, dispatch))
        for what, limit, spent in checks:
            if limit is not None and spent >= limit:
                return f"{what} of ${limit:g} is spent (${spent:.4f}); no more model calls"
        return None

    def _limits(self, tenant_id: str) -> TenantRecord | None:
        """The tenant when it has any budget, else None (the common case costs no counter read)."""
        moment = time.monotonic()
        with self._lock:
            cached = self._cache.get(tenant_id)
        if cached is None or moment - cached[0] > TENANT_CACHE_S:
            cached = (moment, self._tenant(tenant_id))
            with self._lock:
                self._cache[tenant_id] = cached
        tenant = cached[1]
        return tenant if tenant is not None and tenant.has_budget() else None

    def _read(self, keys: list[str]) -> dict[str, float]:
        """The counters (a tenant counter's spent_usd, a dispatch's gw_usd) in one request (a
        budget check sits on a model call's path); a counter not written yet is absent."""
        items = batch_get(
            self._client, self._table, key="dispatch_id", values=keys,
            consistent=True, projection="dispatch_id, spent_usd, gw_usd",
        )  # fmt: skip
        return {item["dispatch_id"]: float(item.get("spent_usd", item.get("gw_usd")) or 0) for item in items}

    def _add(self, key: str, cost_usd: float, expires: int) -> float:
        reply = self._client.update_item(
            TableName=self._table,
            Key={"dispatch_id": encode(key)},
            UpdateExpression="ADD spent_usd :c SET expires_at = :e",
            ExpressionAttributeValues={":c": encode(Decimal(str(cost_usd))), ":e": encode(expires)},
            ReturnValues="UPDATED_NEW",
        )
        return float(reply["Attributes"]["spent_usd"]["N"])
