"""The ECS Fargate runtime: one RunTask per agent task, StopTask on cancel and timeout.

- Every RunTask carries a deterministic ``clientToken`` (dispatch id + attempt, or the
  warm-pool slot's token; at most 64 characters), so a retried call never starts a second task.
- Agents that allow Spot start on FARGATE_SPOT; a capacity error falls back to FARGATE.
- A 200 reply with ``failures[]`` is a failure, never a success.
- Throttling, server errors and capacity errors are retried with capped exponential backoff
  and full jitter; botocore's own retries are off for this client (``ecs_client``) so that
  this is the one retry layer.
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
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from control_plane.runtime.base import LaunchedTask, LaunchError, LaunchRequest, RuntimeTask

log = logging.getLogger(__name__)

SPOT = "FARGATE_SPOT"
ON_DEMAND = "FARGATE"
MAX_TASKS_PER_CALL = 10  # RunTask's own limit on `count`
MAX_LAUNCHES_PER_SECOND = 20  # Fargate's task launch rate
STARTED_BY = "outpost"
GROUP_PREFIX = "outpost:"

THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
)
SERVER_CODES = frozenset({"ServerException", "InternalFailure", "ServiceUnavailable"})
_CAPACITY = re.compile(r"capacity|RESOURCE:", re.IGNORECASE)
_THROTTLED = re.compile(r"throttl|rate exceeded", re.IGNORECASE)


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
    security_groups: tuple[str, ...]
    container_name: str = "agent"


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

    # -- launching -------------------------------------------------------------------------

    def launch(self, requests: list[LaunchRequest]) -> list[LaunchedTask | LaunchError]:
        results: list[LaunchedTask | LaunchError] = []
        for request in requests:
            try:
                results.append(self._launch_one(request))
            except LaunchError as exc:
                log.warning("launch of task %s (%s) failed: %s", request.task_id, request.agent, exc)
                results.append(exc)
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
        raise LaunchError(f"no capacity for agent {request.agent}: {last_reason}", retryable=True)

    def _launch_on(
        self, request: LaunchRequest, family: str, provider: str, *, fallback: bool
    ) -> LaunchedTask | str:
        """Launch on one capacity provider; returns the task, or the capacity error's reason
        once retries are spent. Raises LaunchError for anything that is not capacity."""
        capacity_retries = 0
        reason = ""
        for retry in range(self.backoff.max_attempts):
            # A new token only when the previous call was processed and started nothing
            # (capacity); a throttled call was never processed, so it keeps its token.
            suffix = "od" if fallback else ""
            if capacity_retries:
                suffix = f"{suffix}r{capacity_retries}"
            token = _with_suffix(request.client_token, suffix)
            self.limiter.acquire(1)
            try:
                reply = self.client.run_task(**self._run_task_params(request, family, provider, token))
            except (BotoConnectionError, HTTPClientError) as exc:
                # No answer: the task may or may not have started. The same call with the same
                # client token is idempotent, so it is safe to ask again.
                reason = f"{type(exc).__name__}: {exc}"
                self.sleep(self.backoff.delay(retry))
                continue
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                message = exc.response.get("Error", {}).get("Message", "")
                if code in THROTTLING_CODES or code in SERVER_CODES or _THROTTLED.search(message):
                    reason = f"{code}: {message}"
                    self.sleep(self.backoff.delay(retry))
                    continue
                if _CAPACITY.search(message):
                    reason = f"{code}: {message}"
                    if provider == SPOT:
                        return reason
                    capacity_retries += 1
                    self.sleep(self.backoff.delay(retry))
                    continue
                raise LaunchError(f"RunTask refused: {code}: {message}") from exc
            failures = reply.get("failures") or []
            tasks = reply.get("tasks") or []
            if not failures and len(tasks) == 1:
                return LaunchedTask(
                    task_id=request.task_id, runtime_ref=tasks[0]["taskArn"], capacity=provider
                )
            # A 200 with failures[] (or without a task) is a failure.
            for task in tasks:  # never leave a half-started batch behind
                self.stop(task["taskArn"], "Outpost: RunTask reported failures")
            reason = "; ".join(f"{f.get('reason')} {f.get('detail') or ''}".strip() for f in failures)
            reason = reason or "RunTask returned no task"
            if _CAPACITY.search(reason):
                if provider == SPOT:
                    return reason
                capacity_retries += 1
                self.sleep(self.backoff.delay(retry))
                continue
            if _THROTTLED.search(reason):
                capacity_retries += 1
                self.sleep(self.backoff.delay(retry))
                continue
            raise LaunchError(f"RunTask failed: {reason}")
        if _CAPACITY.search(reason):
            return reason
        raise LaunchError(f"RunTask kept failing: {reason}", retryable=True)

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
                    "securityGroups": list(self.config.security_groups),
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
        for retry in range(self.backoff.max_attempts):
            try:
                self.client.stop_task(cluster=self.config.cluster, task=runtime_ref, reason=reason[:255])
                return
            except (BotoConnectionError, HTTPClientError):
                self.sleep(self.backoff.delay(retry))  # StopTask is idempotent: ask again
                continue
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                message = exc.response.get("Error", {}).get("Message", "")
                if code in THROTTLING_CODES or code in SERVER_CODES:
                    self.sleep(self.backoff.delay(retry))
                    continue
                if code == "InvalidParameterException" and "not found" in message.lower():
                    return  # already gone
                raise
        raise LaunchError(f"StopTask for {runtime_ref} kept being throttled", retryable=True)

    def list_tasks(self) -> list[RuntimeTask]:
        # Both desired statuses: a task ECS is stopping (a Spot interruption gives the runner up
        # to the stop timeout to report) still runs and must not look vanished.
        arns: list[str] = []
        paginator = self.client.get_paginator("list_tasks")
        for desired in ("RUNNING", "STOPPED"):
            for page in paginator.paginate(
                cluster=self.config.cluster, startedBy=STARTED_BY, desiredStatus=desired
            ):
                arns.extend(arn for arn in page.get("taskArns", []) if arn not in arns)
        tasks: list[RuntimeTask] = []
        for start in range(0, len(arns), 100):
            reply = self.client.describe_tasks(cluster=self.config.cluster, tasks=arns[start : start + 100])
            for task in reply.get("tasks", []):
                described = task_from_description(task, self.config.container_name)
                if described.live:
                    tasks.append(described)
        return tasks

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
