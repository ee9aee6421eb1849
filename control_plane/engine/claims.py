"""The control plane's side of the claim protocol (docs/design.md).

A runner presents the one-time claim token that the control plane put into its task's launch
(RunTask overrides, or the local process's environment). The claim long-polls the agent's
queue; for a queued dispatch it

1. reserves the task (``unclaimed`` → ``claiming``, conditional on the task item): a token
   works once, a task claims at most one job, two concurrent claims with one token cannot
   both proceed;
2. moves the dispatch PENDING → RUNNING with the task id in one conditional write (the store's
   ``transition``, conditional on status and version): a dispatch cancelled in the meantime
   fails the condition and is never started, and two tasks cannot both start one dispatch;
3. finishes the task (``claiming`` → ``claimed``) with the hash of a fresh job token, and
   answers with the job.

Step 2 happens only before the deadline the runner still waits for (agents/runner/timing.py):
a poll that comes back later releases its message instead. A crash between the steps leaves
the task ``claiming``; the runner's retry finds it there and either completes the claim (the
dispatch is RUNNING on this task) or undoes the reservation. A claim whose answer never
reached the runner (its job token was never used) is answered again to the retry, with a new
job token.

The job token is bound to that attempt while it runs: it is refused once the dispatch moved on
to another attempt or ended. Upload URLs are signed when the runner asks for them, right before
it uploads, for the attempt's own artifact prefix only.

Beside the job token, a claim mints a gateway token for the agent of a job that has a model
provider: the one credential its agent receives, valid at the model gateway
(control_plane/gateway) only while that attempt runs on that task. The job token stays with
the runner; the gateway token never works for the runner's endpoints, nor the job token at the
gateway.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.endpoints import gateway_route
from agents.runner.timing import CLAIM_COMMIT_BUDGET_S, CLAIM_LONG_POLL_S, SQS_MAX_WAIT_S, UPLOAD_URL_TTL_S
from control_plane.engine import tasks as t
from control_plane.engine.metrics import StartMetrics
from control_plane.lifecycle import TERMINAL, IllegalTransitionError, Status
from control_plane.metrics import CLAIM_FAILURES
from control_plane.queueing import release
from control_plane.store import Actor, DispatchRecord, Stores, VersionConflictError
from control_plane.store.artifacts import artifact_prefix
from control_plane.store.codec import iso, now, parse_iso
from control_plane.store.dispatches import RunState

log = logging.getLogger("outpost.claims")

BUNDLE_FILES = ("patch.diff", "transcript.txt", "summary.json", "manifest.json")
ACTOR = "engine.claims"


class ClaimRefusedError(Exception):
    """The token is unknown, spent, or does not belong to this task: answer 401. ``state``: the
    dispatch of a gateway token whose attempt is over, when it was read."""

    def __init__(self, message: str, *, state: RunState | None = None) -> None:
        super().__init__(message)
        self.state = state


class JobEndedError(Exception):
    """A valid job token whose attempt is over (requeued, or the dispatch ended): answer 409."""


@dataclass
class ClaimService:
    stores: Stores
    tasks: t.TaskStore
    sqs: Any
    queue_urls: Mapping[str, str]
    s3: Any
    bucket: str
    long_poll_s: float = CLAIM_LONG_POLL_S
    commit_budget_s: float = CLAIM_COMMIT_BUDGET_S
    visibility_timeout_s: int = 30
    upload_url_ttl_s: int = UPLOAD_URL_TTL_S
    # The model gateway's URL as agent tasks reach it (OUTPOST_INTERNAL_URL + /gateway); None:
    # the runner derives it from the control-plane URL it was started with.
    gateway_url: str | None = None
    # A gateway token's task, kept after its first check: which job and attempt a token belongs
    # to never changes, so each model call reads only the dispatch (is the attempt still on?).
    # The last answer of that read is kept too (`remembered_gateway`): the gateway checks a
    # known token's attempt again beside forwarding its call (control_plane/gateway/service.py).
    gateway_task_cache_s: float = 300.0
    _gateway_tasks: dict[str, tuple[float, t.TaskRecord]] = field(default_factory=dict, repr=False)
    _gateway_known: dict[str, tuple[float, t.TaskRecord, RunState]] = field(default_factory=dict, repr=False)
    # A reservation this old belongs to no live request: each of the two writes that follow it
    # gives up within about 50 s (botocore's 4 tries of 2 s connect + 10 s read timeouts).
    reservation_stale_s: float = 120.0
    metrics: StartMetrics = field(default_factory=StartMetrics)
    clock: Callable[[], float] = time.monotonic

    @property
    def commit_deadline_s(self) -> float:
        """A claim starts its job only this long after the request arrived; the runner waits longer."""
        return self.long_poll_s + self.commit_budget_s

    # -- claim -------------------------------------------------------------------------------

    def authenticate(self, token: str, task_id: str | None) -> t.TaskRecord:
        parts = t.split_token(token)
        if parts is None or (task_id is not None and task_id != parts[0]):
            raise ClaimRefusedError("unknown claim token")
        task = self.tasks.get(parts[0])
        if task is None or not t.token_matches(parts[1], task.token_hash):
            raise ClaimRefusedError("unknown claim token")
        return task

    def claim(self, token: str, task_id: str | None) -> dict[str, Any] | None:
        """The job for this task, or None if none came within the long poll."""
        arrived = self.clock()
        task = self.authenticate(token, task_id)  # an unknown token names no agent: not counted
        try:
            return self._claim(task, arrived)
        except Exception:  # refused (spent, no queue) or broken: this agent's task got no job
            self.metrics.record(CLAIM_FAILURES, task.agent)
            raise

    def _claim(self, task: t.TaskRecord, arrived: float) -> dict[str, Any] | None:
        if task.state == t.CLAIMING:
            task, job = self._recover(task)
            if job is not None:
                return job
            if task.state == t.CLAIMING:  # an earlier request is still writing this claim
                return None
        if task.state == t.CLAIMED:
            return self._resume(task)
        if task.state != t.UNCLAIMED:
            raise ClaimRefusedError("the claim token is spent")
        queue_url = self.queue_urls.get(task.agent)
        if queue_url is None:
            raise ClaimRefusedError(f"no queue for agent {task.agent}")
        deadline = arrived + self.long_poll_s
        commit_by = arrived + self.commit_deadline_s
        polled = False
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0 and polled:
                return None
            # At least one receive per claim, rounded up to whole seconds: a claim that spent
            # its (short) poll before reaching the queue must still see a waiting job. Never
            # longer than the poll rounded up, which the commit deadline allows for.
            reply = self.sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=1,
                WaitTimeSeconds=max(0, min(SQS_MAX_WAIT_S, math.ceil(remaining))),
                VisibilityTimeout=self.visibility_timeout_s,
            )
            polled = True
            for message in reply.get("Messages", []):
                job = self._try(task, message, queue_url, commit_by)
                if job is not None:
                    return job
                fresh = self.tasks.get(task.task_id)
                if fresh is None or fresh.state not in (t.UNCLAIMED, t.CLAIMING, t.CLAIMED):
                    raise ClaimRefusedError("the claim token is spent")
                if fresh.state != t.UNCLAIMED:
                    # Another request with this token (the runner's retry, or the request it
                    # stopped waiting for) is claiming: the runner's next call resumes that claim.
                    return None
                task = fresh
            if not reply.get("Messages") and remaining < 1:
                return None

    def _try(
        self, task: t.TaskRecord, message: dict[str, Any], queue_url: str, commit_by: float
    ) -> dict[str, Any] | None:
        handle = message["ReceiptHandle"]
        try:
            dispatch_id = str(json.loads(message["Body"])["dispatch_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("dropping a malformed queue message: %r", message.get("Body"))
            self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=handle)
            return None
        record = self.stores.dispatches.get(dispatch_id=dispatch_id, tenant_id=None)
        if record is None or record.status is not Status.PENDING or record.agent != task.agent:
            # cancelled, already started, or a duplicate message: nothing to run
            self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=handle)
            return None
        reserved = self.tasks.move(
            task, t.CLAIMING, fields={"job": dispatch_id, "job_attempt": record.attempt}
        )
        if reserved is None:  # the same token in a concurrent claim got there first
            release(message, sqs=self.sqs, queue_url=queue_url)
            return None
        if self.clock() >= commit_by:
            # The runner has stopped waiting for this answer: a job started now would run on
            # nobody. Leave the job to the next claim.
            log.warning("a claim for task %s polled past its deadline; job left queued", task.task_id)
            self.metrics.record(CLAIM_FAILURES, task.agent)
            self.tasks.move(reserved, t.UNCLAIMED, remove=("job", "job_attempt"))
            release(message, sqs=self.sqs, queue_url=queue_url)
            return None
        try:
            started = self.stores.dispatches.transition(
                dispatch_id=dispatch_id,
                to=Status.RUNNING,
                actor=Actor.system(ACTOR),
                expected_version=record.version,
                current=record,
                # the capacity the task was launched on prices the run (DispatchPublic)
                changes={"task_id": task.task_id, "capacity": task.capacity},
            )
        except (VersionConflictError, IllegalTransitionError):
            self.tasks.move(reserved, t.UNCLAIMED, remove=("job", "job_attempt"))
            current = self.stores.dispatches.get(dispatch_id=dispatch_id, tenant_id=None)
            if current is None or current.status is not Status.PENDING:
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=handle)
            else:
                release(message, sqs=self.sqs, queue_url=queue_url)
            return None
        except Exception:
            self.tasks.move(reserved, t.UNCLAIMED, remove=("job", "job_attempt"))
            raise
        job = self._finish(reserved, started)
        self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=handle)
        return job

    def _finish(self, task: t.TaskRecord, record: DispatchRecord) -> dict[str, Any]:
        tokens, hashes = self._tokens(task, record)
        claimed = self.tasks.move(
            task,
            t.CLAIMED,
            expect=(t.CLAIMING,),
            fields={**hashes, "claimed_at": iso(now()), "job": record.dispatch_id},
        )
        if claimed is None:  # a concurrent retry of the claim finished it first
            fresh = self.tasks.get(task.task_id)
            if fresh is None or fresh.state != t.CLAIMED:
                raise ClaimRefusedError("the task changed during its claim")
            return self._resume(fresh)
        warm = parse_iso(task.created_at) < parse_iso(record.created_at)
        self.metrics.record_start(
            agent=record.agent,
            warm=warm,
            queue_wait_s=(now() - parse_iso(record.created_at)).total_seconds(),
        )
        log.info(
            "task %s claimed dispatch %s (%s start)",
            task.task_id,
            record.dispatch_id,
            "warm" if warm else "cold",
        )
        return self.job_answer(record, **tokens)

    def _tokens(self, task: t.TaskRecord, record: DispatchRecord) -> tuple[dict[str, Any], dict[str, Any]]:
        """A fresh job token, and a gateway token for an agent that has a model provider: the
        tokens for the answer and the hashes for the task item (a new claim answer replaces both)."""
        job_token, job_hash = t.make_token(task.task_id)
        gateway_token, gateway_hash = (
            t.make_token(task.task_id) if gateway_route(record.agent) else (None, None)
        )
        return (
            {"job_token": job_token, "gateway_token": gateway_token},
            {"job_token_hash": job_hash, "gateway_token_hash": gateway_hash},
        )

    def _recover(self, task: t.TaskRecord) -> tuple[t.TaskRecord, dict[str, Any] | None]:
        """A task found ``claiming``: by an earlier request of its runner that is still writing
        (the runner gave up waiting and asked again), or left so by a crash. Complete the claim
        if the dispatch is already RUNNING on this task; leave a recent reservation to the
        request that holds it (the task stays ``claiming``: ask again); undo an old one."""
        record = self.stores.dispatches.get(dispatch_id=task.job or "", tenant_id=None)
        if record is not None and record.status is Status.RUNNING and record.task_id == task.task_id:
            return task, self._finish(task, record)
        reserved_s = (now() - parse_iso(task.updated_at or task.created_at)).total_seconds()
        if record is not None and record.status is Status.PENDING and reserved_s < self.reservation_stale_s:
            return task, None
        undone = self.tasks.move(task, t.UNCLAIMED, expect=(t.CLAIMING,), remove=("job", "job_attempt"))
        if undone is None:
            raise ClaimRefusedError("the claim token is spent")
        return undone, None

    def _resume(self, task: t.TaskRecord) -> dict[str, Any]:
        """The claim answer again, with a new job token, for a runner that never received it
        (it gave up waiting, or the answer was lost): as long as no job token was used, the
        claim token's holder is the runner that has not started the job."""
        record = self.stores.dispatches.get(dispatch_id=task.job or "", tenant_id=None)
        if (
            task.job_token_used
            or record is None
            or record.status is not Status.RUNNING
            or (record.task_id, record.attempt) != (task.task_id, task.job_attempt)
        ):
            raise ClaimRefusedError("the claim token is spent")
        tokens, hashes = self._tokens(task, record)
        if self.tasks.move(task, t.CLAIMED, fields=hashes) is None:
            raise ClaimRefusedError("the claim token is spent")
        log.info("task %s resumed its claim of dispatch %s", task.task_id, record.dispatch_id)
        return self.job_answer(record, **tokens)

    def job_answer(
        self, record: DispatchRecord, job_token: str, gateway_token: str | None = None
    ) -> dict[str, Any]:
        repo = {"url": record.repo_url, "ref": record.repo_ref} if record.repo_url else None
        return {
            "dispatch_id": record.dispatch_id,
            "agent": record.agent,
            "task": record.task,
            "repo": repo,
            "timeout_s": record.timeout_s,
            "model": record.model,  # None: the task's default model (OUTPOST_AGENT_MODEL)
            "attempt": record.attempt,
            "job_token": job_token,
            # what to publish, never how: the runner asks for its token (.../publish-token)
            # after the agent's processes are gone
            "publish": record.publish,
            # the agent's only credential: its model calls through the gateway, for this
            # attempt while it runs (null for an agent without a provider)
            "gateway_token": gateway_token,
            "gateway_url": self.gateway_url if gateway_token else None,
        }

    def upload_urls(self, record: DispatchRecord) -> dict[str, str]:
        """Presigned PUT URLs for the attempt's bundle files, signed now with the control plane's
        current credentials (a presigned URL dies with the session that signed it)."""
        prefix = artifact_prefix(record.tenant_id, record.dispatch_id, record.attempt)
        return {
            name: self.s3.generate_presigned_url(
                "put_object",
                Params={"Bucket": self.bucket, "Key": prefix + name},
                ExpiresIn=self.upload_url_ttl_s,
            )
            for name in BUNDLE_FILES
        }

    # -- job-token calls (logs, result) -------------------------------------------------------

    def authenticate_job(
        self, token: str, dispatch_id: str, *, ended: bool = False
    ) -> tuple[t.TaskRecord, DispatchRecord]:
        """The task and dispatch of a job token that is valid now: its attempt is the dispatch's
        current one, on this task, and still RUNNING (or, with ``ended``, finished on it: a
        repeated result report). Raises ClaimRefusedError (401) or JobEndedError (409)."""
        parts = t.split_token(token)
        if parts is None:
            raise ClaimRefusedError("unknown job token")
        for _ in range(3):
            task, record = self._job_of(parts, dispatch_id, ended=ended)
            # The first use tells a claim retry that the answer arrived (see _resume).
            if task.job_token_used or self.tasks.move(task, task.state, fields={"job_token_used": True}):
                return task, record
        log.warning("task %s: the first use of its job token could not be recorded", task.task_id)
        return task, record

    def _job_of(
        self, parts: tuple[str, str], dispatch_id: str, *, ended: bool
    ) -> tuple[t.TaskRecord, DispatchRecord]:
        task, record = self.tasks.get_with_job(parts[0], dispatch_id)
        if task is None or task.job != dispatch_id or not t.token_matches(parts[1], task.job_token_hash):
            raise ClaimRefusedError("unknown job token")
        if record is None:
            raise ClaimRefusedError("unknown job token")
        if (record.task_id, record.attempt) != (task.task_id, task.job_attempt):
            raise JobEndedError(
                f"the job token belongs to attempt {task.job_attempt}, which is over;"
                f" the dispatch is at attempt {record.attempt}"
            )
        if record.status is not Status.RUNNING and not (ended and record.status in TERMINAL):
            raise JobEndedError(f"the job token's attempt is over: the dispatch is {record.status}")
        return task, record

    # -- the model gateway's token ----------------------------------------------------------

    def authenticate_gateway(self, token: str) -> tuple[t.TaskRecord, RunState]:
        """The task and dispatch of a gateway token that is valid now: minted by the claim of the
        dispatch's current attempt, on this task, which is still RUNNING. Raises
        ClaimRefusedError for anything else (a foreign, forged or replaced token, or an attempt
        that is over): the gateway answers 401 either way."""
        task = self._gateway_task(token)
        record = self.stores.dispatches.run_state(dispatch_id=task.job or "")
        if record is None:
            raise ClaimRefusedError("the gateway token's attempt is over")
        if (record.task_id, record.attempt) != (task.task_id, task.job_attempt):
            raise ClaimRefusedError(
                f"the gateway token belongs to attempt {task.job_attempt}, which is over", state=record
            )
        if record.status is not Status.RUNNING:
            raise ClaimRefusedError(
                f"the gateway token's attempt is over: the dispatch is {record.status}", state=record
            )
        if record.cancel_requested:
            raise ClaimRefusedError(
                "the gateway token's attempt is over: the dispatch is being cancelled", state=record
            )
        key = t.token_key(token)
        self._gateway_known[key] = (self.clock() + self.gateway_task_cache_s, task, record)
        return task, record

    def remembered_gateway(self, token: str) -> tuple[t.TaskRecord, RunState] | None:
        """The task and dispatch of a gateway token that passed its last check on this replica
        (memory only, no read); None for a token unknown here, refused since, or long unused."""
        known = self._gateway_known.get(t.token_key(token))
        if known is None or known[0] <= self.clock():
            return None
        return known[1], known[2]

    def forget_gateway(self, token: str) -> None:
        """A token's attempt is over (or spent its budget): check it fully from its next call."""
        self._gateway_known.pop(t.token_key(token), None)

    def forget_gateway_dispatch(self, dispatch_id: str) -> None:
        """The dispatch's attempt ended here (its result, its budget): no call of its tokens
        reaches the provider on this replica any more, not even beside its check."""
        for key in [
            k for k, (_, _, state) in self._gateway_known.items() if state.dispatch_id == dispatch_id
        ]:
            self._gateway_known.pop(key, None)

    def _gateway_task(self, token: str) -> t.TaskRecord:
        """The claimed task a gateway token was minted for (its first check reads it)."""
        key = t.token_key(token)
        moment = self.clock()
        cached = self._gateway_tasks.get(key)
        if cached is not None and cached[0] > moment:
            return cached[1]
        parts = t.split_token(token)
        task = self.tasks.get(parts[0]) if parts is not None else None
        if parts is None or task is None or not t.token_matches(parts[1], task.gateway_token_hash):
            raise ClaimRefusedError("unknown gateway token")
        if task.state != t.CLAIMED:
            raise ClaimRefusedError("the gateway token's attempt is over")
        if len(self._gateway_tasks) > 10_000:  # a replica's tokens of the last minutes, at most
            self._gateway_tasks = {k: v for k, v in self._gateway_tasks.items() if v[0] > moment}
            self._gateway_known = {k: v for k, v in self._gateway_known.items() if v[0] > moment}
        self._gateway_tasks[key] = (moment + self.gateway_task_cache_s, task)
        return task


def stored_bundle(record: DispatchRecord, s3: Any, bucket: str) -> list[str]:
    """The bundle files present under the attempt's artifact prefix."""
    prefix = artifact_prefix(record.tenant_id, record.dispatch_id, record.attempt)
    reply = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(entry["Key"][len(prefix) :] for entry in reply.get("Contents", []))
