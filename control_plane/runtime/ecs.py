"""The ECS Fargate runtime: one RunTask per agent task, StopTask on cancel and timeout.

- Every RunTask carries a deterministic ``clientToken`` (dispatch id + attempt, or the
  warm-pool slot's token; at most 64 characters), so a retried call never starts a second task.
- Agents that allow Spot start on FARGATE_SPOT; a capacity error falls back to FARGATE.
- A 200 reply with ``failures[]`` is a failure, never a success.
- Every ECS call (RunTask, StopTask, ListTasks, DescribeTasks) goes through one helper,
  ``EcsRuntime._call``, that retries throttling, server errors and lost answers with capped
  exponential backoff and full jitter; botocore's own retries are off for this client
  (``ecs_client``) so that this is the one retry layer. Capacity errors are retried by the
  launch path (with a new client token, since ECS processed the call).
- ListTasks takes ``startedBy`` only as its one filter ("When you specify startedBy as the
  filter, it must be the only filter that you use", ECS API reference), and without
  ``desiredStatus`` it lists only tasks whose desired status is RUNNING. So the runtime lists
  ``startedBy`` alone, then ``desiredStatus=STOPPED`` alone (tasks ECS is stopping still run),
  and keeps the tasks DescribeTasks reports as started by Outpost and not yet stopped.
- At most 10 tasks per RunTask call (each call here starts exactly one task, because every
  task carries its own one-time claim token in its overrides) and at most 20 launches in any
  one-second window, per control-plane replica (only the replica that holds the scaler lease
  launches).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from control_plane.runtime.base import LaunchedTask, LaunchError, LaunchRequest, RuntimeTask
from control_plane.runtime.provider_keys import SecretKeys

log = logging.getLogger(__name__)

SPOT = "FARGATE_SPOT"
ON_DEMAND = "FARGATE"
MAX_TASKS_PER_CALL = 10  # RunTask's own limit on `count`
MAX_DESCRIBE = 100  # DescribeTasks' limit on `tasks`, and ListTasks' on `maxResults`
MAX_REASON = 255  # StopTask's limit on `reason`
MAX_LAUNCHES_PER_SECOND = 20  # Fargate's task launch rate
STARTED_BY = "outpost"
GROUP_PREFIX = "outpost:"

THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
)
SERVER_CODES = frozenset({"ServerException", "InternalFailure", "ServiceUnavailable"})
_CAPACITY = re.compile(r"capacity|RESOURCE:", re.IGNORECASE)
_THROTTLED = re.compile(r"throttl|rate exceeded", re.IGNORECASE)


class EcsUnavailableError(RuntimeError):
    """An ECS call that kept being throttled or unanswered through every retry."""


def _transient(exc: ClientError) -> bool:
    """Throttling or a server error: ECS did not process the call, so asking again is safe."""
    code = exc.response.get("Error", {}).get("Code", "")
    message = exc.response.get("Error", {}).get("Message", "")
    return code in THROTTLING_CODES or code in SERVER_CODES or bool(_THROTTLED.search(message))


def ecs_client(region: str, endpoint_url: str | None = None) -> Any:
    """An ECS client without botocore retries: EcsRuntime retries on its own terms."""
    import boto3

    return boto3.client(
        "ecs",
        region_name=region,
        endpoint_url=endpoint_url,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


@dataclass(frozen=True)
class EcsConfig:
    cluster: str
    task_definitions: dict[str, str]  # agent -> task definition family (or ARN)
    subnets: tuple[str, ...]
    # agent -> its own security group: a task starts in its agent's group and no other, which
    # reaches only that agent's egress proxy listener (stacks/fleet.py)
    security_groups: dict[str, str]
    container_name: str = "agent"

    def __post_init__(self) -> None:
        missing = sorted(set(self.task_definitions) - set(self.security_groups))
        if missing:  # RunTask without a group would start the task in the VPC's default group
            raise ValueError(f"no security group for agent(s) {', '.join(missing)}")


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter: sleep U(0, min(cap, base * 2**n))."""

    base: float = 0.2
    cap: float = 5.0
    max_attempts: int = 6
    rng: Callable[[], float] = random.random

    def delay(self, retry: int) -> float:
        return self.rng() * min(self.cap, self.base * (2**retry))


class LaunchRateLimiter:
    """At most ``limit`` launches in any window of ``window`` seconds (thread-safe)."""

    def __init__(
        self,
        limit: int = MAX_LAUNCHES_PER_SECOND,
        window: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self, n: int = 1) -> None:
        if n > self.limit:
            raise ValueError(f"cannot launch {n} tasks at once; the limit is {self.limit}")
        with self._lock:
            while True:
                now = self._clock()
                while self._stamps and now - self._stamps[0] >= self.window:
                    self._stamps.popleft()
                if len(self._stamps) + n <= self.limit:
                    self._stamps.extend([now] * n)
                    return
                # wait until enough of the oldest launches leave the window
                oldest_needed = self._stamps[len(self._stamps) + n - self.limit - 1]
                self._sleep(max(oldest_needed + self.window - now, 0.001))


@dataclass
class EcsRuntime:
    client: Any
    config: EcsConfig
    backoff: Backoff = field(default_factory=Backoff)
    limiter: LaunchRateLimiter = field(default_factory=LaunchRateLimiter)
    sleep: Callable[[float], None] = time.sleep
    name: str = "ecs"
    provider_keys: SecretKeys | None = None  # the agents' key secrets (OUTPOST_AGENT_SECRETS)

    def agent_unavailable(self, agent: str) -> str | None:
        """Why a task of ``agent`` could not start (its provider key's secret has no value: ECS
        would fail the task at start), or None: checked when the dispatch is made."""
        return self.provider_keys.missing(agent) if self.provider_keys is not None else None

    # -- the one retry layer ------------------------------------------------------------------

    def _call(self, operation: str, *, launch: bool = False, **params: Any) -> dict[str, Any]:
        """One ECS call, asked again on throttling, server errors and lost answers.

        Every retried call is safe: ECS did not process a throttled call, and the calls that may
        have been processed without an answer are idempotent (RunTask by its client token,
        StopTask by nature, the reads trivially). Any other error is raised at once.
        """
        last: Exception | None = None
        for retry in range(self.backoff.max_attempts):
            if retry:
                self.sleep(self.backoff.delay(retry - 1))
            if launch:
                self.limiter.acquire(1)
            try:
                reply: dict[str, Any] = getattr(self.client, operation)(**params)
                return reply
            except (BotoConnectionError, HTTPClientError) as exc:
                last = exc
            except ClientError as exc:
                if not _transient(exc):
                    raise
                last = exc
        raise EcsUnavailableError(f"{operation} kept failing: {last}") from last

    # -- launching -------------------------------------------------------------------------

    def launch(self, requests: list[LaunchRequest]) -> list[LaunchedTask | LaunchError]:
        results: list[LaunchedTask | LaunchError] = []
        for request in requests:
            try:
                results.append(self._launch_one(request))
            except (LaunchError, EcsUnavailableError, ClientError, BotoCoreError) as exc:
                # one result per request, whatever failed: the scaler records each outcome
                error = exc if isinstance(exc, LaunchError) else LaunchError(f"RunTask failed: {exc}")
                log.warning("launch of task %s (%s) failed: %s", request.task_id, request.agent, error)
                results.append(error)
        return results

    def _launch_one(self, request: LaunchRequest) -> LaunchedTask:
        family = self.config.task_definitions.get(request.agent)
        if family is None:
            raise LaunchError(f"no task definition configured for agent {request.agent!r}")
        providers = [SPOT, ON_DEMAND] if request.spot else [ON_DEMAND]
        last_reason = "no attempt made"
        for provider in providers:
            outcome = self._launch_on(request, family, provider, fallback=provider != providers[0])
            if isinstance(outcome, LaunchedTask):
                return outcome
            last_reason = outcome
            log.info("no %s capacity for task %s: %s", provider, request.task_id, outcome)
        raise LaunchError(f"no capacity for agent {request.agent}: {last_reason}")

    def _launch_on(
        self, request: LaunchRequest, family: str, provider: str, *, fallback: bool
    ) -> LaunchedTask | str:
        """Launch on one capacity provider; returns the task, or the capacity error's reason
        once retries are spent. Raises LaunchError for anything that is not capacity."""
        reason = ""
        for retry in range(self.backoff.max_attempts):
            # A processed call that started nothing (capacity) needs a new token: ECS refuses a
            # token reused with other results. Throttled calls are retried inside _call with theirs.
            suffix = "od" if fallback else ""
            if retry:
                suffix = f"{suffix}r{retry}"
                self.sleep(self.backoff.delay(retry - 1))
            token = _with_suffix(request.client_token, suffix)
            params = self._run_task_params(request, family, provider, token)
            try:
                reply = self._call("run_task", launch=True, **params)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                message = exc.response.get("Error", {}).get("Message", "")
                if not _CAPACITY.search(message):
                    raise LaunchError(f"RunTask refused: {code}: {message}") from exc
                reason = f"{code}: {message}"
            else:
                failures = reply.get("failures") or []
                tasks = reply.get("tasks") or []
                if not failures and len(tasks) == 1:
                    return LaunchedTask(
                        task_id=request.task_id, runtime_ref=tasks[0]["taskArn"], capacity=provider
                    )
                # A 200 with failures[] (or without a task) is a failure.
                self._stop_all(tasks)
                reason = "; ".join(f"{f.get('reason')} {f.get('detail') or ''}".strip() for f in failures)
                reason = reason or "RunTask returned no task"
                if not (_CAPACITY.search(reason) or _THROTTLED.search(reason)):
                    raise LaunchError(f"RunTask failed: {reason}")
            if provider == SPOT and _CAPACITY.search(reason):
                return reason  # fall back to on-demand at once
        if _CAPACITY.search(reason):
            return reason
        raise LaunchError(f"RunTask kept failing: {reason}")

    def _stop_all(self, tasks: list[dict[str, Any]]) -> None:
        """Never leave a half-started batch behind; a stop that fails here is logged, and the
        reconciler stops the task as an orphan (its record is marked stopped)."""
        for task in tasks:
            try:
                self.stop(task["taskArn"], "Outpost: RunTask reported failures")
            except (EcsUnavailableError, ClientError, BotoCoreError) as exc:
                log.warning("could not stop %s after a failed RunTask: %s", task["taskArn"], exc)

    def _run_task_params(
        self, request: LaunchRequest, family: str, provider: str, token: str
    ) -> dict[str, Any]:
        return {
            "cluster": self.config.cluster,
            "taskDefinition": family,
            "count": 1,
            "clientToken": token,
            "capacityProviderStrategy": [{"capacityProvider": provider, "weight": 1}],
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": list(self.config.subnets),
                    "securityGroups": [self.config.security_groups[request.agent]],
                    "assignPublicIp": "DISABLED",
                }
            },
            "overrides": {
                "containerOverrides": [
                    {
                        "name": self.config.container_name,
                        "environment": [
                            {"name": key, "value": value} for key, value in sorted(request.env.items())
                        ],
                    }
                ]
            },
            "startedBy": STARTED_BY,
            "group": GROUP_PREFIX + request.agent,
            "enableExecuteCommand": False,
        }

    # -- stopping and listing ---------------------------------------------------------------

    def stop(self, runtime_ref: str, reason: str) -> None:
        try:
            self._call("stop_task", cluster=self.config.cluster, task=runtime_ref, reason=reason[:MAX_REASON])
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if (
                error.get("Code") == "InvalidParameterException"
                and "not found" in error.get("Message", "").lower()
            ):
                return  # already gone
            raise

    def list_tasks(self) -> list[RuntimeTask]:
        # startedBy must be ListTasks' only filter, and alone it lists RUNNING-desired tasks;
        # tasks ECS is stopping (a Spot interruption gives the runner up to the stop timeout to
        # report) still run and must not look vanished, so the STOPPED-desired ones are listed
        # too and told apart by what DescribeTasks says.
        listed = self._list_arns(startedBy=STARTED_BY) + self._list_arns(desiredStatus="STOPPED")
        arns = list(dict.fromkeys(listed))  # each once, in listing order
        tasks: list[RuntimeTask] = []
        for start in range(0, len(arns), MAX_DESCRIBE):
            reply = self._call(
                "describe_tasks", cluster=self.config.cluster, tasks=arns[start : start + MAX_DESCRIBE]
            )
            for task in reply.get("tasks", []):
                described = task_from_description(task, self.config.container_name)
                if task.get("startedBy") == STARTED_BY and described.live:
                    tasks.append(described)
        return tasks

    def _list_arns(self, **one_filter: str) -> list[str]:
        arns: list[str] = []
        params: dict[str, Any] = {"cluster": self.config.cluster, "maxResults": MAX_DESCRIBE, **one_filter}
        while True:
            page = self._call("list_tasks", **params)
            arns.extend(page.get("taskArns", []))
            if not page.get("nextToken"):
                return arns
            params["nextToken"] = page["nextToken"]

    def close(self, *, stop_tasks: bool = True) -> None:  # ECS tasks outlive the control plane
        return None


def task_from_description(task: dict[str, Any], container_name: str = "agent") -> RuntimeTask:
    group = task.get("group") or ""
    agent = group[len(GROUP_PREFIX) :] if group.startswith(GROUP_PREFIX) else None
    return RuntimeTask(
        runtime_ref=task["taskArn"],
        agent=agent,
        task_id=task_env(task, container_name).get("OUTPOST_TASK_ID"),
        last_status=task.get("lastStatus", "UNKNOWN"),
        extra={"stopCode": task.get("stopCode"), "stoppedReason": task.get("stoppedReason")},
    )


def task_env(task: dict[str, Any], container_name: str = "agent") -> dict[str, str]:
    """The environment overrides of a task (from DescribeTasks or a task-state event)."""
    for override in (task.get("overrides") or {}).get("containerOverrides", []):
        if override.get("name") == container_name:
            return {e["name"]: e["value"] for e in override.get("environment", [])}
    return {}


def _with_suffix(token: str, suffix: str) -> str:
    if not suffix:
        return token
    tail = "-" + suffix
    return token[: 64 - len(tail)] + tail
