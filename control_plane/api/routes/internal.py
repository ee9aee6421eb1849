"""The internal endpoints runners call (the claim protocol of docs/design.md).

In AWS only the agent security group reaches them: the public load balancer refuses
``/internal/*`` and the control-plane security group admits the agents' group on the service
port. Authentication is the one-time claim token (claim) or the job token (logs, uploads,
result), both as ``Authorization: Bearer``; an unknown, spent or foreign token is 401, a job
token whose attempt is over (the dispatch was requeued or ended) is 409.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agents.error_kinds import KINDS
from control_plane.engine import tasks
from control_plane.engine.claims import ClaimRefusedError, ClaimService, JobEndedError, stored_bundle
from control_plane.engine.outcomes import Outcomes, runner_failure
from control_plane.github import GitHub, PublishingError, repository_of
from control_plane.lifecycle import TERMINAL, Status
from control_plane.problems import Problem
from control_plane.usage import Usage, model_used, record_cost

log = logging.getLogger("outpost.internal")
router = APIRouter(prefix="/internal", tags=["internal"], include_in_schema=False)

MAX_LOG_LINES = 1000
MAX_LOG_LINE_CHARS = 16 * 1024
DispatchId = Annotated[str, Path(max_length=64)]


class ClaimBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task_id: str = Field(min_length=1, max_length=256)


class LogsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lines: list[Annotated[str, Field(max_length=MAX_LOG_LINE_CHARS)]] = Field(max_length=MAX_LOG_LINES)


class ResultBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Literal["COMPLETED", "FAILED", "TIMED_OUT", "INTERRUPTED"]
    exit_code: int | None = None
    error: Annotated[str, Field(max_length=4096)] | None = None
    summary: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _usage_is_valid(self) -> ResultBody:
        # a bad cost or token count is a 422 here, never a 500 or a half-written record
        try:
            Usage.from_summary(self.summary)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise ValueError(f"summary usage: {problems}") from None
        kind = self.summary.get("error_kind")
        if kind is not None and kind not in KINDS:
            raise ValueError(f"summary error_kind: one of {', '.join(KINDS)} or null, got {kind!r}")
        return self


def _engine(request: Request) -> Any:
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        raise Problem(
            503, "Service Unavailable", "the dispatch engine is not running here", type_="no-engine"
        )
    return engine


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(
            401,
            "Unauthorized",
            "a bearer token is required",
            type_="unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


def _refused(error: ClaimRefusedError | JobEndedError) -> Problem:
    if isinstance(error, JobEndedError):
        return Problem(409, "Conflict", str(error), type_="attempt-over")
    return Problem(
        401, "Unauthorized", str(error), type_="unauthorized", headers={"WWW-Authenticate": "Bearer"}
    )


@router.post("/claim", response_model=None)
def claim(
    body: ClaimBody, request: Request, authorization: Annotated[str | None, Header()] = None
) -> dict[str, Any] | Response:
    """Long-polls for a job: 200 with the job, 204 when none came (call again), 401 if refused."""
    token = _bearer(authorization)
    claims: ClaimService = _engine(request).claims
    try:
        job = claims.claim(token, body.task_id)
    except ClaimRefusedError as error:
        raise _refused(error) from None
    if job is None:
        return Response(status_code=204)
    return job


@router.post("/dispatches/{dispatch_id}/logs", status_code=202)
def append_logs(
    dispatch_id: DispatchId,
    body: LogsBody,
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
) -> dict[str, int]:
    engine = _engine(request)
    try:
        _, record = engine.claims.authenticate_job(_bearer(authorization), dispatch_id)
    except (ClaimRefusedError, JobEndedError) as error:
        raise _refused(error) from None
    if not body.lines:
        return {"chunk": 0}
    chunk = engine.stores.logs.append(tenant_id=record.tenant_id, dispatch_id=dispatch_id, lines=body.lines)
    return {"chunk": chunk}


@router.post("/dispatches/{dispatch_id}/uploads")
def upload_urls(
    dispatch_id: DispatchId, request: Request, authorization: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    """Presigned PUT URLs for the running attempt's bundle files, valid for ``expires_in_s``:
    the runner asks right before it uploads, so a long job never holds an expired URL."""
    claims: ClaimService = _engine(request).claims
    try:
        _, record = claims.authenticate_job(_bearer(authorization), dispatch_id)
    except (ClaimRefusedError, JobEndedError) as error:
        raise _refused(error) from None
    if record.cancel_requested:
        # it ends CANCELLED with no bundle: files stored now would show in its artifact list
        # and nowhere else (the runner asks right before it uploads, after its agent ended)
        raise Problem(
            409, "Conflict", "the dispatch is being cancelled; no bundle is kept", type_="cancelled"
        )
    return {"uploads": claims.upload_urls(record), "expires_in_s": claims.upload_url_ttl_s}


@router.post("/dispatches/{dispatch_id}/publish-token")
def publish_token(
    dispatch_id: DispatchId, request: Request, authorization: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    """A token for pushing this job's branch (and opening its pull request), scoped to its
    repository (control_plane/github.py). The runner asks after its agent's processes are
    gone, so no agent process runs while the token exists in the task."""
    engine = _engine(request)
    try:
        _, record = engine.claims.authenticate_job(_bearer(authorization), dispatch_id)
    except (ClaimRefusedError, JobEndedError) as error:
        raise _refused(error) from None
    settings = engine.settings
    repo = repository_of(record.repo_url or "", github_url=settings.github_url)
    if not record.publish or repo is None:
        raise Problem(409, "Conflict", "this dispatch publishes nothing", type_="no-publish")
    pull_request = record.publish.get("pull_request")
    github = GitHub.from_settings(settings)
    try:
        grant = github.grant(repo, pull_request=pull_request is not None)
        base = None
        if pull_request is not None:
            base = pull_request.get("base") or record.repo_ref or github.default_branch(grant)
    except PublishingError as error:
        log.warning("no publishing token for dispatch %s: %s", dispatch_id, error)
        raise Problem(502, "Bad Gateway", str(error), type_="github-refused") from None
    log.info(
        "publishing token for dispatch %s: repository %s, expires %s",
        dispatch_id, repo.full_name, grant.expires_at or "never (configured token)",
    )  # fmt: skip
    return {
        "token": grant.token,
        "remote_url": record.repo_url,
        "api_url": grant.api_url,
        "base": base,
        "expires_at": grant.expires_at,
    }


@router.post("/dispatches/{dispatch_id}/result")
def report_result(
    dispatch_id: DispatchId,
    body: ResultBody,
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    engine = _engine(request)
    try:
        task, record = engine.claims.authenticate_job(_bearer(authorization), dispatch_id, ended=True)
    except (ClaimRefusedError, JobEndedError) as error:
        raise _refused(error) from None
    outcomes: Outcomes = engine.outcomes
    if record.status in TERMINAL:
        if body.outcome == str(record.status):
            return {"dispatch_id": dispatch_id, "status": str(record.status)}  # a repeated report
        raise Problem(409, "Conflict", f"the dispatch already ended {record.status}", type_="already-final")
    if record.task_id != task.task_id or record.status is not Status.RUNNING:
        raise Problem(409, "Conflict", "the dispatch is no longer running on this task", type_="not-running")
    if body.outcome == "INTERRUPTED" and task.state == tasks.STOPPING:
        # Outpost itself stopped the task (cancel, timeout, scale-down): whoever stopped it
        # decides the dispatch's status; a requeue here would restart a cancelled job.
        raise Problem(409, "Conflict", f"the task was stopped: {task.stop_reason}", type_="task-stopped")
    if body.outcome == "INTERRUPTED":
        moved = outcomes.requeue_or_fail(
            record,
            reason=body.error or "the task was interrupted",
            component="runner",
            expect_task=task.task_id,
        )
    else:
        changes: dict[str, Any] = {
            "summary": body.summary or None,
            "error": body.error,
            "cost": record_cost(
                body.summary,
                model=model_used(
                    record, body.summary, default=engine.settings.settings_of(record.agent).default_model
                ),
            ),
        }
        if body.exit_code is not None:
            changes["exit_code"] = body.exit_code
        changes["artifacts"] = stored_bundle(record, engine.clients.s3, engine.settings.artifacts_bucket)
        moved = outcomes.finish(
            record,
            Status(body.outcome),
            component="runner",
            changes=changes,
            expect_task=task.task_id,
            failure=runner_failure(body.outcome, body.summary),
        )
    # the attempt is over: its gateway token's calls are checked before they reach a provider
    engine.claims.forget_gateway_dispatch(dispatch_id)
    if moved is None:
        current = engine.stores.dispatches.get(dispatch_id=dispatch_id, tenant_id=None)
        raise Problem(
            409, "Conflict", f"the dispatch is {current.status if current else 'gone'}", type_="not-running"
        )
    return {"dispatch_id": dispatch_id, "status": str(moved.status), "attempt": moved.attempt}
