"""Dispatches: create, read, list, cancel, logs and artifacts — always within the caller's tenant."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from agents.registry import AGENTS
from control_plane.api.deps import (
    CallerDep,
    ClientsDep,
    SettingsDep,
    StoreDep,
    TaskControlDep,
    TenantDep,
    actor_of,
)
from control_plane.api.repos import accepted_repo_url, check_publish, publish_record
from control_plane.hooks import RuntimeUnavailableError, agent_unavailable, work_arrived
from control_plane.lifecycle import ACTIVE, QUEUED, TERMINAL, Status
from control_plane.models import (
    ArtifactList,
    ArtifactPublic,
    DispatchCreate,
    DispatchPage,
    DispatchPublic,
    LogPage,
)
from control_plane.problems import Problem, not_found
from control_plane.queueing import enqueue_dispatch
from control_plane.store import DispatchRecord, VersionConflictError
from control_plane.store.dispatches import CursorError, new_dispatch_id, read_cursor, sign_cursor
from control_plane.store.idempotency import MAX_KEY_CHARS
from control_plane.store.tenants import TenantRecord

router = APIRouter(tags=["dispatches"])
log = logging.getLogger("outpost.api")
DispatchId = Annotated[str, Path(max_length=64, description="the id POST /dispatch answered")]
FOLLOW_POLL_S = 1.0
FOLLOW_MAX_S = 3600.0  # then the client reconnects with ?after=<next_chunk>


def _load(stores: StoreDep, tenant: TenantRecord, dispatch_id: str) -> DispatchRecord:
    record = stores.dispatches.get(dispatch_id=dispatch_id, tenant_id=tenant.tenant_id)
    if record is None:
        raise not_found("dispatch", dispatch_id)
    return record


def _request_hash(body: DispatchCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_quota(stores: StoreDep, tenant: TenantRecord, settings: SettingsDep) -> None:
    """429 past the tenant's quotas. Waiting dispatches are counted (as far as the quota);
    running ones are the run slots its tenant item holds, read with the key's check: admission
    keeps them at or under max_running, so this bites only once an operator lowers it."""
    queued = stores.dispatches.count(tenant_id=tenant.tenant_id, statuses=QUEUED, at_most=tenant.max_queued)
    retry = {"Retry-After": str(settings.quota_retry_after_s)}
    if queued >= tenant.max_queued:
        raise Problem(
            429, "Quota Exceeded", f"{queued} dispatches are waiting; the tenant may queue {tenant.max_queued}",
            type_="quota-exceeded", field="max_queued", headers=retry,
        )  # fmt: skip
    running = tenant.run_slots
    if queued + running >= tenant.max_running + tenant.max_queued:
        raise Problem(
            429, "Quota Exceeded",
            f"{running} dispatches hold run slots and {queued} wait; the tenant may run {tenant.max_running}",
            type_="quota-exceeded", field="max_running", headers=retry,
        )  # fmt: skip


def _check_model(agent: str, model: str | None, tenant: TenantRecord, settings: SettingsDep) -> None:
    """The model a dispatch runs must be allowed by its agent's settings and by its tenant: a
    named one by both, the agent's default (no model named) by the tenant. An agent without a
    default runs its CLI's own, which no list can name."""
    agent_settings = settings.settings_of(agent)
    if model is None:
        default = agent_settings.default_model
        if default and not tenant.allows_model(default):
            raise Problem(
                422, "Invalid Request",
                f"the default model {default} of agent {agent} is not allowed for this tenant; name an allowed one",
                field="model",
            )  # fmt: skip
        return
    choosable = agent_settings.choosable()
    if model not in choosable:
        offered = f"; it allows {', '.join(choosable)}" if choosable else "; no models are configured for it"
        raise Problem(
            422, "Invalid Request", f"model {model} is not allowed for agent {agent}{offered}", field="model"
        )
    if not tenant.allows_model(model):
        raise Problem(422, "Invalid Request", f"model {model} is not allowed for this tenant", field="model")


@router.post("/dispatch", status_code=202, response_model=DispatchPublic)
def create_dispatch(
    body: DispatchCreate,
    response: Response,
    tenant: TenantDep,
    caller: CallerDep,
    stores: StoreDep,
    settings: SettingsDep,
    clients: ClientsDep,
    control: TaskControlDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=MAX_KEY_CHARS)] = None,
) -> DispatchPublic:
    """Accept a dispatch: record it PENDING, put it on its agent's queue, answer 202."""
    if not tenant.allows(body.agent):
        raise Problem(
            422, "Invalid Request", f"agent {body.agent} is not allowed for this tenant", field="agent"
        )
    if body.agent not in settings.dispatch_queue_urls:
        raise Problem(422, "Invalid Request", f"agent {body.agent} is not enabled here", field="agent")
    _check_model(body.agent, body.model, tenant, settings)
    spent = stores.budgets.refusal(tenant.tenant_id) if tenant.has_budget() else None
    if spent is not None:
        raise Problem(429, "Budget Exceeded", spent, type_="budget-exceeded")
    missing = agent_unavailable(control, body.agent)
    if missing is not None:
        raise Problem(409, "Agent Unavailable", missing, type_="agent-unavailable", field="agent")
    try:
        timeout_s = body.resolved_timeout()
    except ValueError as error:
        raise Problem(422, "Invalid Request", f"timeout_s: {error}", field="timeout_s") from None
    # here, in the route's worker thread: a slow DNS answer must not block the event loop
    repo_url = accepted_repo_url(body.repo.url, settings, agent=body.agent) if body.repo else None
    check_publish(body, repo_url=repo_url, settings=settings)

    dispatch_id = new_dispatch_id()
    if idempotency_key is not None:
        request_hash = _request_hash(body)
        bound = stores.idempotency.bind(
            tenant_id=tenant.tenant_id,
            key=idempotency_key,
            request_hash=request_hash,
            dispatch_id=dispatch_id,
        )
        if bound.request_hash != request_hash:
            raise Problem(
                422, "Idempotency Key Reused",
                "this Idempotency-Key was used with a different request body",
                type_="idempotency-key-reused", field="Idempotency-Key",
            )  # fmt: skip
        if not bound.created:
            earlier = stores.dispatches.get(dispatch_id=bound.dispatch_id, tenant_id=tenant.tenant_id)
            if earlier is not None:
                response.headers["Location"] = f"/dispatch/{earlier.dispatch_id}"
                response.headers["Idempotent-Replayed"] = "true"
                return DispatchPublic.of(earlier)
            # The first request bound the key but never wrote its dispatch: finish its work.
        dispatch_id = bound.dispatch_id

    _check_quota(stores, tenant, settings)
    record = DispatchRecord(
        dispatch_id=dispatch_id,
        tenant_id=tenant.tenant_id,
        agent=body.agent,
        task=body.task,
        timeout_s=timeout_s,
        repo_url=repo_url,
        repo_ref=body.repo.ref if body.repo else None,
        labels=body.labels,
        model=body.model,
        publish=publish_record(body, dispatch_id=dispatch_id),
    )
    try:
        record = stores.dispatches.create(record=record, actor=actor_of(caller))
    except VersionConflictError:
        # a concurrent request with the same Idempotency-Key wrote it first
        existing = stores.dispatches.get(dispatch_id=dispatch_id, tenant_id=tenant.tenant_id)
        if existing is None:
            raise
        response.headers["Location"] = f"/dispatch/{dispatch_id}"
        return DispatchPublic.of(existing)
    # created unadmitted (its tenant's run slots are all taken), it waits for the admission pass
    if record.admitted and enqueue_dispatch(
        record, sqs=clients.sqs, queue_urls=settings.dispatch_queue_urls, store=stores.dispatches
    ):
        work_arrived(control)
    response.headers["Location"] = f"/dispatch/{dispatch_id}"
    return DispatchPublic.of(record)


@router.get("/dispatch/{dispatch_id}", response_model=DispatchPublic)
def get_dispatch(dispatch_id: DispatchId, tenant: TenantDep, stores: StoreDep) -> DispatchPublic:
    return DispatchPublic.of(_load(stores, tenant, dispatch_id))


@router.delete("/dispatch/{dispatch_id}", response_model=DispatchPublic)
def cancel_dispatch(
    dispatch_id: DispatchId, tenant: TenantDep, caller: CallerDep, stores: StoreDep, control: TaskControlDep
) -> DispatchPublic:
    """Cancel: a waiting dispatch at once; a running one after its task was told to stop."""
    for _ in range(5):  # the engine may move the dispatch meanwhile; decide again on its new state
        record = _load(stores, tenant, dispatch_id)
        if record.status is Status.CANCELLED:
            return DispatchPublic.of(record)
        if record.status in TERMINAL:
            raise Problem(
                409, "Conflict", f"the dispatch already ended {record.status}", type_="already-final"
            )
        if record.status in ACTIVE and record.task_id:
            # the intent first: if this process dies after the stop, the engine ends it CANCELLED
            if not stores.dispatches.request_cancel(
                dispatch_id=dispatch_id, task_id=record.task_id, by=str(actor_of(caller))
            ):
                continue
            try:
                control.stop_task(record.task_id, reason=f"cancelled by {actor_of(caller)}")
            except RuntimeUnavailableError as error:
                raise Problem(503, "Service Unavailable", str(error), type_="runtime-unavailable") from None
            except Exception:
                # the dispatch stays RUNNING: recording CANCELLED while the task runs would be a lie
                log.exception("stopping a task failed", extra={"dispatch_id": dispatch_id})
                raise Problem(
                    503, "Service Unavailable", "the task could not be stopped; try again",
                    type_="stop-failed", headers={"Retry-After": "5"},
                ) from None  # fmt: skip
        try:
            updated = stores.dispatches.transition(
                dispatch_id=dispatch_id,
                to=Status.CANCELLED,
                actor=actor_of(caller),
                expected_version=record.version,
                tenant_id=tenant.tenant_id,
                current=record,
            )
        except VersionConflictError:
            continue
        work_arrived(control)  # its run slot is free: a waiting dispatch may be admitted now
        return DispatchPublic.of(updated)
    raise Problem(409, "Conflict", "the dispatch kept changing; try again", type_="conflict")


@router.get("/dispatches", response_model=DispatchPage)
def list_dispatches(
    tenant: TenantDep,
    stores: StoreDep,
    settings: SettingsDep,
    status: Status | None = None,
    agent: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> DispatchPage:
    """The tenant's dispatches, newest first."""
    if agent is not None and agent not in AGENTS:
        # a misspelt filter would otherwise look like "no dispatches"
        raise Problem(
            400, "Bad Request", f"unknown agent {agent!r}; known: {', '.join(AGENTS)}", field="agent"
        )
    binding = {"status": status, "agent": agent}
    start = None
    if cursor is not None:
        try:
            start = read_cursor(
                cursor, key=settings.cursor_key(), tenant_id=tenant.tenant_id, binding=binding
            )
        except CursorError as error:
            raise Problem(
                400, "Bad Request", f"cursor: {error}", field="cursor", type_="invalid-cursor"
            ) from None
    records, position = stores.dispatches.list(
        tenant_id=tenant.tenant_id, limit=limit, status=status, agent=agent, start_key=start
    )
    next_cursor = None
    if position is not None:
        next_cursor = sign_cursor(
            key=settings.cursor_key(), tenant_id=tenant.tenant_id, binding=binding, position=position
        )
    return DispatchPage(items=[DispatchPublic.of(r) for r in records], next_cursor=next_cursor)


@router.get("/dispatch/{dispatch_id}/logs", response_model=LogPage)
def get_logs(
    dispatch_id: DispatchId,
    tenant: TenantDep,
    stores: StoreDep,
    after: Annotated[int, Query(ge=0, description="the next_chunk of an earlier answer")] = 0,
    follow: Annotated[bool, Query(description="stream new lines (NDJSON) until the dispatch ends")] = False,
) -> LogPage | StreamingResponse:
    record = _load(stores, tenant, dispatch_id)
    if not follow:
        lines, last = stores.logs.read(tenant_id=tenant.tenant_id, dispatch_id=dispatch_id, after_chunk=after)
        return LogPage(lines=lines, next_chunk=last, finished=record.status in TERMINAL)

    async def stream() -> AsyncIterator[bytes]:
        # async, so that a follower holds no worker thread while it waits for new lines
        position, deadline = after, time.monotonic() + FOLLOW_MAX_S
        while True:
            current = await run_in_threadpool(
                stores.dispatches.get, dispatch_id=dispatch_id, tenant_id=tenant.tenant_id
            )
            finished = current is None or current.status in TERMINAL
            lines, position = await run_in_threadpool(
                stores.logs.read, tenant_id=tenant.tenant_id, dispatch_id=dispatch_id, after_chunk=position
            )
            if lines or finished:
                page = LogPage(lines=lines, next_chunk=position, finished=finished)
                yield page.model_dump_json().encode() + b"\n"
            if finished or time.monotonic() > deadline:
                return
            await asyncio.sleep(FOLLOW_POLL_S)

    return StreamingResponse(stream(), media_type="application/x-ndjson")


@router.get("/dispatch/{dispatch_id}/artifacts", response_model=ArtifactList)
def list_artifacts(dispatch_id: DispatchId, tenant: TenantDep, stores: StoreDep) -> ArtifactList:
    record = _load(stores, tenant, dispatch_id)
    items = stores.artifacts.list(tenant_id=tenant.tenant_id, dispatch_id=dispatch_id, attempt=record.attempt)
    return ArtifactList(items=[ArtifactPublic.model_validate(vars(a)) for a in items])
