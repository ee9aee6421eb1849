"""One model call of an agent: checked, forwarded with the real key, streamed back as it
arrives, then metered, charged and audited (docs/model-gateway.md).

Before forwarding: the gateway token (the dispatch's current attempt, RUNNING on the task it
was minted for), the provider (the agent's own), the path (the model calls its CLI makes), the
model (the agent's and the tenant's lists), the budgets, the per-dispatch limit of open calls,
the key. Any refusal answers in the provider's own error shape, so the CLI reports it as it
would the provider's. When all of that is in memory (a known token, the tenant and the key
read recently, a tenant without budgets) the checks run on the event loop; whatever needs a
read runs in a worker thread.

A token's first call is checked before anything is forwarded. For its later calls this
replica remembers the token's task and dispatch. Its run state (is the attempt still RUNNING
and not being cancelled?) is trusted for RUN_STATE_FRESH_S after a read that agreed began;
after that, the read runs beside the forwarded request instead of before it: the provider's
answer is held until the read agrees, or dropped (the request cancelled) and the call refused
in the provider's shape. The read then costs nothing on the agent's path, as a provider takes
far longer to answer than DynamoDB does. The price: a token keeps passing calls for at most
RUN_STATE_FRESH_S after its attempt ended (cancelled, requeued, ended on another replica), and
one call after that may reach the provider before it is refused; the refusal makes the token's
next call wait for the full check. The replica that saw the attempt end (its result report,
or the call that spent its budget: ``forget_gateway_dispatch``) refuses at once. A tenant with
budgets has every call checked before forwarding.

Forwarding: the request as the agent sent it, without its credential and hop-by-hop headers,
with the real key; one exception: a streamed Chat Completions request that did not ask for
usage is sent with ``stream_options.include_usage`` (without it OpenAI streams report no
usage), and the extra usage chunk is kept from the client, which never asked for it. The
answer (status, headers but hop-by-hop ones and cookies, body) passes through unchanged,
chunk by chunk; a 429 or 500 of the provider reaches the agent as the provider sent it.
Afterwards control_plane/gateway/accounting.py records the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.to_thread
import httpx
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from agents.endpoints import api_root, gateway_route
from agents.registry import AGENTS
from control_plane.engine.claims import ClaimRefusedError
from control_plane.engine.tasks import TaskRecord
from control_plane.gateway.accounting import Accounting, BudgetCheck, Call
from control_plane.gateway.keys import ProviderKeys
from control_plane.gateway.metering import Meter, usage_only_chunk
from control_plane.gateway.policy import model_refusal
from control_plane.gateway.providers import (
    CREDENTIAL_HEADERS,
    PROVIDERS,
    Provider,
    Refusal,
    client_credential,
    parse_json,
)
from control_plane.lifecycle import Status
from control_plane.observability import current_request_id
from control_plane.settings import Settings
from control_plane.store import Stores, TenantRecord
from control_plane.store.dispatches import RunState

# Production timeouts: a model may think for minutes between two bytes of a non-streamed
# answer (the providers' own SDKs wait 10 minutes); connecting and sending are quick or broken.
TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=10.0)
LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100, keepalive_expiry=60.0)
TENANT_CACHE_S = 5.0  # a changed model list applies within this long (as the budgets' cache)
# A known token's run state that agreed this recently (the read's start) is trusted without a
# new read: an attempt that ends stops passing calls within this long on every replica (at once
# on the replica that saw it end), and a token in steady use costs one run-state read a second.
RUN_STATE_FRESH_S = 1.0
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-connection", "te", "trailer", "trailers"}
    | {"transfer-encoding", "upgrade"}
)
# Not forwarded upstream: the hop (host, length, encoding are the gateway's to set), the
# client's credential, what the load balancer and the control plane added.
_NOT_FORWARDED = HOP_BY_HOP | CREDENTIAL_HEADERS | {"host", "content-length", "accept-encoding", "cookie"}
_NOT_FORWARDED_PREFIXES = ("x-forwarded-", "x-amzn-", "x-request-id", "forwarded")
_NOT_RETURNED = HOP_BY_HOP | {"set-cookie", "x-request-id"}


class GatewayTokens(Protocol):
    """control_plane.engine.claims.ClaimService, as the gateway uses it."""

    def authenticate_gateway(self, token: str) -> tuple[TaskRecord, RunState]: ...

    def remembered_gateway(self, token: str) -> tuple[TaskRecord, RunState] | None: ...

    def forget_gateway(self, token: str) -> None: ...

    def forget_gateway_dispatch(self, dispatch_id: str) -> None: ...


class _Unknown(enum.Enum):
    UNKNOWN = "unknown"


_UNKNOWN = _Unknown.UNKNOWN  # not in memory: a read is needed


@dataclass(frozen=True)
class Admitted:
    call: Call
    key: str
    root: str
    verify: str | None  # a remembered token, whose attempt is checked beside the call


class Gateway:
    def __init__(
        self,
        *,
        settings: Settings,
        stores: Stores,
        tokens: GatewayTokens,
        keys: ProviderKeys,
        budgets: BudgetCheck | None = None,
        timeout: httpx.Timeout = TIMEOUT,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.settings = settings
        self.stores = stores
        self.tokens = tokens
        self.keys = keys
        self.budgets = budgets
        self.timeout = timeout
        self._clock = clock
        self.accounting = Accounting(
            stores=stores,
            budgets=lambda: self.budgets,
            over_budget=tokens.forget_gateway_dispatch,
            clock=clock,
        )
        self._agents = {agent: settings.settings_of(agent) for agent in AGENTS}
        self._tenants: dict[str, tuple[float, TenantRecord | None]] = {}
        self._checked: dict[str, float] = {}  # token -> start of its last agreeing run-state read
        self._open: dict[str, int] = {}  # dispatch id -> calls open on this replica
        self._lock = threading.Lock()
        self._client: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = None

    # -- the call -----------------------------------------------------------------------------

    async def handle(self, request: Request, route: str) -> Response:
        call = Call(
            provider=route,
            method=request.method,
            path=_path_below(request, route),
            request_id=current_request_id() or "",
            started=self._clock(),
        )
        provider = PROVIDERS.get(route)
        if provider is None:
            known = ", ".join(PROVIDERS)
            return JSONResponse({"error": {"message": f"no provider {route!r}; known: {known}"}}, 404)
        body = await request.body()
        payload = parse_json(body) if request.method == "POST" else None
        token = client_credential(request.headers, request.query_params)
        # Most calls (a known token, the tenant and key in memory) are admitted right here;
        # whatever needs a read goes to a worker thread.
        admitted = self._admit(provider, call, token, payload, blocking=False)
        if admitted is None:
            admitted = await anyio.to_thread.run_sync(self._admit, provider, call, token, payload, True)
        assert admitted is not None
        if isinstance(admitted, Refusal):
            self.accounting.after(call, None)
            return _refusal(admitted)
        try:
            return await self._forward(request, provider, admitted, body, payload)
        except BaseException:
            self._release(call.dispatch_id)
            raise

    def _admit(
        self, provider: Provider, call: Call, token: str | None, payload: Any, blocking: bool
    ) -> Admitted | Refusal | None:
        """The call's checks; with ``blocking`` False (on the event loop) None as soon as one
        needs a read."""

        def refuse(reason: str, message: str, retry_after_s: int | None = None) -> Refusal:
            return _refuse(provider, call, reason, message, retry_after_s)

        if token is None:
            return refuse(
                "unauthorized", "no gateway token (send the dispatch's gateway token as the API key)"
            )
        remembered = self.tokens.remembered_gateway(token)
        if remembered is None and not blocking:
            return None
        try:
            task, record = remembered or self._authenticate(token)
        except ClaimRefusedError as error:
            return self._ended(provider, call, error)
        call.tenant_id, call.dispatch_id, call.task_id = record.tenant_id, record.dispatch_id, task.task_id
        call.agent, call.attempt = record.agent, record.attempt
        expected = gateway_route(record.agent)
        if expected != provider.route:
            return refuse("forbidden", f"agent {record.agent} reaches its model through /gateway/{expected}")
        if not provider.allows(call.method, call.path):
            return refuse("not-found", f"{call.method} {call.path} is not a model call the gateway passes on")
        if call.method == "POST":
            if provider.error_style != "google" and not isinstance(payload, dict):
                return refuse("bad-request", "the request body must be a JSON object")
            call.model = provider.model_of(call.path, payload)
            if call.model is None:
                return refuse("bad-request", "the request names no model")
            tenant = self._tenant(record.tenant_id, blocking)
            if tenant is _UNKNOWN:
                return None
            why = model_refusal(
                call.model,
                agent=record.agent,
                settings=self._agents.get(record.agent),
                tenant=tenant,
                dispatch_model=record.model,
            )
            if why is not None:
                return refuse("model-not-allowed", why)
        # A tenant with budgets pays for exactness: its calls are checked before forwarding,
        # after this replica charged the dispatch's earlier calls, so no call goes to the
        # provider once a budget is spent (beside the call, it would reach the provider unpaid
        # for, and a budget could be overshot by more than one call).
        if self.budgets is None:
            budgeted: bool | None = False
        elif blocking:
            budgeted = self.budgets.applies(record.tenant_id)
        else:
            budgeted = self.budgets.applies_known(record.tenant_id)
        if budgeted is None or (budgeted and not blocking) or not (blocking or self.keys.known(record.agent)):
            return None
        if budgeted:
            self.accounting.settle(record.dispatch_id)
        if (remembered is None or budgeted) and self.budgets is not None:
            spent = self.budgets.refusal(record.tenant_id, record.dispatch_id)
            if spent is not None:
                return refuse("budget", spent)
        key = self.keys.key(record.agent)
        if key is None:
            return refuse("no-key", f"no provider key is configured for agent {record.agent}")
        limit = self.settings.gateway_max_calls_per_dispatch
        with self._lock:
            if self._open.get(record.dispatch_id, 0) >= limit:
                return refuse("concurrency", f"at most {limit} model calls at once per dispatch", 1)
            self._open[record.dispatch_id] = self._open.get(record.dispatch_id, 0) + 1
        verify = token if remembered is not None and not self._fresh(token) else None
        return Admitted(call, key, self._root(record.agent, provider), verify)

    def _authenticate(self, token: str) -> tuple[TaskRecord, RunState]:
        """The token's full check (its dispatch's run state read); remembers when it agreed."""
        started = time.monotonic()
        task, record = self.tokens.authenticate_gateway(token)
        with self._lock:
            if len(self._checked) > 10_000:  # the tokens of the last second, at most
                self._checked = {k: v for k, v in self._checked.items() if started - v < RUN_STATE_FRESH_S}
            self._checked[token] = max(started, self._checked.get(token, started))
        return task, record

    def _fresh(self, token: str) -> bool:
        with self._lock:
            checked = self._checked.get(token)
        return checked is not None and time.monotonic() - checked < RUN_STATE_FRESH_S

    def _verify(self, provider: Provider, call: Call, token: str) -> Refusal | None:
        """The full check of a remembered token, beside its forwarded call."""
        try:
            _, record = self._authenticate(token)
        except ClaimRefusedError as error:
            self.tokens.forget_gateway(token)
            return self._ended(provider, call, error)
        if self.budgets is not None:
            spent = self.budgets.refusal(record.tenant_id, record.dispatch_id)
            if spent is not None:
                self.tokens.forget_gateway(token)
                return _refuse(provider, call, "budget", spent)
        return None

    def _ended(self, provider: Provider, call: Call, error: ClaimRefusedError) -> Refusal:
        """A refused token: 401, but for an attempt that a spent budget ended, the budget's
        refusal (the agent is told why, in the provider's quota shape, not that its key is bad)."""
        state = error.state
        if state is not None and state.status is Status.FAILED and self.budgets is not None:
            spent = self.budgets.refusal(state.tenant_id, state.dispatch_id)
            if spent is not None:
                call.tenant_id, call.dispatch_id, call.agent = state.tenant_id, state.dispatch_id, state.agent
                return _refuse(provider, call, "budget", spent)
        return _refuse(provider, call, "unauthorized", f"{error}")

    async def _forward(
        self, request: Request, provider: Provider, admitted: Admitted, body: bytes, payload: Any
    ) -> Response:
        call = admitted.call
        drop = None
        if (
            isinstance(payload, dict)
            and payload.get("stream") is True
            and call.path.endswith("/chat/completions")
        ):
            options = payload.get("stream_options")
            options = options if isinstance(options, dict) else {}
            if not options.get("include_usage"):
                body = json.dumps({**payload, "stream_options": {**options, "include_usage": True}}).encode()
                drop = usage_only_chunk
        query = httpx.QueryParams([(k, v) for k, v in request.query_params.multi_items() if k != "key"])
        client = self._http()
        upstream_request = client.build_request(
            call.method,
            admitted.root + call.path,
            params=query,
            headers=_forward_headers(request.headers, provider.key_headers(admitted.key)),
            content=body if call.method == "POST" else None,
        )
        sending = asyncio.ensure_future(client.send(upstream_request, stream=True))
        try:
            refusal = None
            if admitted.verify is not None:
                refusal = await anyio.to_thread.run_sync(self._verify, provider, call, admitted.verify)
        except BaseException:
            _abandon(sending)
            raise
        if refusal is not None:
            _abandon(sending)
            self._release(call.dispatch_id)
            self.accounting.after(call, None)
            return _refusal(refusal)
        try:
            upstream = await sending
        except httpx.HTTPError as error:
            self._release(call.dispatch_id)
            refusal = _refuse(
                provider, call, "upstream", f"the provider did not answer ({type(error).__name__})"
            )
            self.accounting.after(call, None)
            return _refusal(refusal)
        call.answered, call.status = self._clock(), upstream.status_code
        if upstream.status_code == 401:
            self.keys.forget(call.agent)  # rotated, perhaps: read it again next time
        event_stream = upstream.headers.get("content-type", "").startswith("text/event-stream")
        meter = Meter(provider.usage(), event_stream=event_stream, drop=drop)
        if upstream.headers.get("content-encoding", "identity") != "identity":
            meter.unreadable = True  # asked for identity; an encoded answer passes unread
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _NOT_RETURNED}
        if drop is not None and event_stream:
            headers.pop("content-length", None)

        async def stream() -> AsyncIterator[bytes]:
            async for chunk in upstream.aiter_raw():
                passed = meter.feed(chunk) if not meter.unreadable else chunk
                if passed:
                    yield passed
            tail = meter.finish()
            if tail:
                yield tail

        async def closed() -> None:  # whether the answer ended, broke, or the agent hung up
            await upstream.aclose()
            self.accounting.after(call, meter)
            self._release(call.dispatch_id)  # after: `settle` sees the call until it is accounted

        return _PassThrough(stream(), closed, status_code=upstream.status_code, headers=headers)

    # -- state ------------------------------------------------------------------------------

    def _tenant(self, tenant_id: str, blocking: bool = True) -> TenantRecord | None | _Unknown:
        """The tenant (a cached read); without ``blocking``, _UNKNOWN where that needs a read."""
        moment = time.monotonic()
        with self._lock:
            cached = self._tenants.get(tenant_id)
        if cached is not None and moment - cached[0] < TENANT_CACHE_S:
            return cached[1]
        if not blocking:
            return _UNKNOWN
        tenant = self.stores.tenants.get(tenant_id=tenant_id)
        with self._lock:
            self._tenants[tenant_id] = (moment, tenant)
        return tenant

    def _root(self, agent: str, provider: Provider) -> str:
        """Where the agent's calls go: the operator's ``base_url`` for the agent (a proxy, a
        test server), else the configured root of its provider, else the provider's own."""
        settings = self._agents.get(agent)
        if settings is not None and settings.base_url:
            return api_root(settings.base_url, agent)
        return (self.settings.gateway_upstreams.get(provider.route) or provider.root).rstrip("/")

    def _release(self, dispatch_id: str) -> None:
        if not dispatch_id:
            return
        with self._lock:
            left = self._open.get(dispatch_id, 0) - 1
            if left > 0:
                self._open[dispatch_id] = left
            else:
                self._open.pop(dispatch_id, None)

    def settle(self, timeout_s: float = 10.0) -> None:
        """Wait until no call is open and every call is accounted for (tests, benchmarks)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pending = self.accounting.pending()
            with self._lock:
                open_calls = bool(self._open)
            if not pending and not open_calls:
                return
            self.accounting.wait(pending, max(0.0, deadline - time.monotonic()))
            if open_calls:
                time.sleep(0.01)

    # -- the upstream client ------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        """One pooled client per event loop (an httpx client belongs to the loop it was used on)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client[0] is not loop:
            self._client = (loop, httpx.AsyncClient(timeout=self.timeout, limits=LIMITS, trust_env=False))
        return self._client[1]

    async def aclose(self) -> None:
        if self._client is not None:
            with contextlib.suppress(RuntimeError):
                await self._client[1].aclose()
            self._client = None
        self.accounting.close()


def _refuse(
    provider: Provider, call: Call, reason: str, message: str, retry_after_s: int | None = None
) -> Refusal:
    refusal = provider.refusal(reason, message, retry_after_s=retry_after_s)
    call.status, call.refused = refusal.status, reason
    return refusal


def _refusal(refusal: Refusal) -> JSONResponse:
    return JSONResponse(refusal.body, refusal.status, headers=dict(refusal.headers))


def _abandon(sending: asyncio.Future[httpx.Response]) -> None:
    """Drop a forwarded call whose answer nobody will read: cancel it, or close its answer."""

    def close(done: asyncio.Future[httpx.Response]) -> None:
        if not done.cancelled() and done.exception() is None:
            asyncio.ensure_future(done.result().aclose())

    sending.cancel()
    sending.add_done_callback(close)


class _PassThrough(StreamingResponse):
    """A streamed answer that runs ``closed`` once it is over, however it ended: also when the
    client hung up before its first byte, when the body was never iterated at all."""

    def __init__(self, content: AsyncIterator[bytes], closed: Callable[[], Awaitable[None]], **kwargs: Any):
        super().__init__(content, **kwargs)
        self._closed = closed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._closed()


def _path_below(request: Request, route: str) -> str:
    """The raw request path below ``/gateway/<route>`` (never decoded: forwarded as sent)."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    prefix = f"/gateway/{route}"
    return path[len(prefix) :] if path.startswith(prefix) else path


def _forward_headers(headers: Mapping[str, str], key_headers: Mapping[str, str]) -> dict[str, str]:
    forwarded = {
        k: v
        for k, v in headers.items()
        if k.lower() not in _NOT_FORWARDED and not k.lower().startswith(_NOT_FORWARDED_PREFIXES)
    }
    for name in headers.get("connection", "").split(","):  # what the client named hop-by-hop
        forwarded.pop(name.strip().lower(), None)
    return {**forwarded, "accept-encoding": "identity", **key_headers}
