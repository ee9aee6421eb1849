"""After a model call: its tokens and cost on the dispatch, the budgets charged, the audit entry.

Runs in worker threads once the answer ended (or the agent hung up), so an agent never waits
for it: one atomic ADD of the call's tokens and cost to the dispatch's gateway totals
(control_plane/store/dispatches.py), ``budgets.charge`` (which ends the dispatch FAILED with
reason budget-exceeded when the call took it over a budget), and one audit entry:
tenant, dispatch, task, provider, model, path, status, tokens, cost, latency — never the
prompt, the answer, a key or a token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.prices import table
from control_plane.gateway.metering import Meter, Tokens
from control_plane.store import Actor, Stores

log = logging.getLogger("outpost.gateway")


SETTLE_TIMEOUT_S = 5.0  # a budget check waits at most this long for earlier calls' charges


class BudgetCheck(Protocol):
    """control_plane.budgets.Budgets, as the gateway uses it."""

    def refusal(self, tenant_id: str, dispatch_id: str) -> str | None: ...

    def charge(
        self, tenant_id: str, dispatch_id: str, cost_usd: float, dispatch_spent: float
    ) -> str | None: ...

    def applies(self, tenant_id: str) -> bool: ...

    def applies_known(self, tenant_id: str) -> bool | None: ...


@dataclass
class Call:
    """What the audit and the metering need to know of one call; never its content."""

    provider: str
    method: str
    path: str
    request_id: str
    started: float
    tenant_id: str = ""
    dispatch_id: str = ""
    task_id: str = ""
    agent: str = ""
    attempt: int = 0
    model: str | None = None
    status: int = 0
    refused: str | None = None  # the gateway's reason, when it answered itself
    answered: float | None = None  # when the provider's headers arrived
    tokens: Tokens | None = None
    cost_usd: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Accounting:
    def __init__(
        self,
        *,
        stores: Stores,
        budgets: Callable[[], BudgetCheck | None],
        over_budget: Callable[[str], None] = lambda dispatch_id: None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """``over_budget(dispatch_id)``: a call took its dispatch over a budget (the budgets
        module ends the dispatch; the gateway stops passing its calls on at once)."""
        self.stores = stores
        self._budgets = budgets
        self._over_budget = over_budget
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gateway-accounting")
        self._pending: set[Future[None]] = set()
        self._by_dispatch: dict[str, set[Future[None]]] = {}
        self._lock = threading.Lock()

    def after(self, call: Call, meter: Meter | None) -> None:
        """Account for the call in a worker thread."""
        if not call.dispatch_id:  # refused before its token named a dispatch: nothing to charge
            log.warning(
                "gateway call refused: %s %s /gateway/%s%s",
                call.status, call.refused, call.provider, call.path,
            )  # fmt: skip
            return
        future = self._executor.submit(self._account, call, meter)
        with self._lock:
            self._pending.add(future)
            self._by_dispatch.setdefault(call.dispatch_id, set()).add(future)
        future.add_done_callback(lambda done: self._done(done, call.dispatch_id))

    def settle(self, dispatch_id: str, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
        """Waits until this replica has charged the dispatch's finished calls: a budget check
        after that sees them (an agent's next call follows its last answer at once)."""
        with self._lock:
            futures = list(self._by_dispatch.get(dispatch_id, ()))
        if futures:
            wait_for_futures(futures, timeout=timeout_s)

    def pending(self) -> list[Future[None]]:
        with self._lock:
            return list(self._pending)

    def wait(self, futures: list[Future[None]], timeout_s: float) -> None:
        wait_for_futures(futures, timeout=timeout_s)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def _done(self, future: Future[None], dispatch_id: str) -> None:
        with self._lock:
            self._pending.discard(future)
            left = self._by_dispatch.get(dispatch_id)
            if left is not None:
                left.discard(future)
                if not left:
                    del self._by_dispatch[dispatch_id]

    def _account(self, call: Call, meter: Meter | None) -> None:
        try:
            if meter is not None:
                meter.finish()
                call.tokens = meter.tokens
                if meter.unreadable:
                    call.details["unmetered"] = True
            self._record(call)
        except Exception:
            log.exception("gateway call of dispatch %s not accounted", call.dispatch_id)

    def _record(self, call: Call) -> None:
        ended = self._clock()
        tokens = call.tokens
        dispatch_spent: float | None = None
        if tokens is not None:
            price = table().price(call.model)
            if price is not None:
                call.cost_usd = price.cost_usd(
                    input_tokens=tokens.input,
                    cached_input_tokens=tokens.cached,
                    output_tokens=tokens.output,
                    cache_write_input_tokens=tokens.cache_write,
                )
            dispatch_spent = self.stores.dispatches.add_gateway_usage(
                dispatch_id=call.dispatch_id,
                input_tokens=tokens.input,
                cached_input_tokens=tokens.cached,
                output_tokens=tokens.output,
                cost_usd=call.cost_usd,
                model=call.model,
            )
        budgets = self._budgets()
        over = None
        if budgets is not None and call.cost_usd and dispatch_spent is not None:
            over = budgets.charge(call.tenant_id, call.dispatch_id, call.cost_usd, dispatch_spent)
            if over:
                self._over_budget(call.dispatch_id)
        details: dict[str, Any] = {
            "provider": call.provider,
            "model": call.model,
            "method": call.method,
            "path": call.path,
            "status": call.status,
            "task_id": call.task_id,
            "agent": call.agent,
            "attempt": call.attempt,
            "input_tokens": tokens.input if tokens else None,
            "cached_input_tokens": tokens.cached if tokens else None,
            "output_tokens": tokens.output if tokens else None,
            "cache_write_input_tokens": tokens.cache_write if tokens else None,
            "cost_usd": call.cost_usd,
            # to the provider's answer (what the agent waited for), and to its end
            "latency_ms": round(((call.answered or ended) - call.started) * 1000, 1),
            "duration_ms": round((ended - call.started) * 1000, 1),
            "refused": call.refused,
            "budget_exceeded": over,
            **call.details,
        }
        self.stores.audit.record(
            actor=Actor(kind="system", id="gateway", request_id=call.request_id or f"gw-{call.started}"),
            action="gateway.call",
            tenant_id=call.tenant_id,
            target=call.dispatch_id,
            details={k: v for k, v in details.items() if v is not None},
        )
        log.info(
            "gateway call",
            extra={
                "dispatch_id": call.dispatch_id,
                "provider": call.provider,
                "model": call.model,
                "status": call.status,
                "duration_ms": details["duration_ms"],
                "cost_usd": call.cost_usd,
            },
        )
