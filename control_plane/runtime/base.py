"""The runtime interface: how the control plane starts and stops one-job agent tasks.

Two implementations share it: ``EcsRuntime`` (ECS Fargate, production) and ``LocalRuntime``
(the runner as a local subprocess in a temporary workspace, for ``outpost dev`` and tests).
Both start the same runner (``python -m agents.runner``) with the same environment contract
(docs/design.md): ``OUTPOST_CONTROL_PLANE_URL``, ``OUTPOST_CLAIM_TOKEN``, ``OUTPOST_AGENT``,
``OUTPOST_TASK_ID`` and ``OUTPOST_WORKSPACE``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

# A task-state event in the shape of ECS "ECS Task State Change" events (only the fields the
# status tracker reads). The local runtime emits the same shape, so one tracker serves both.
TaskEvent = dict[str, Any]
EventSink = Callable[[TaskEvent], None]

LIVE_STATUSES = ("PROVISIONING", "PENDING", "ACTIVATING", "RUNNING", "DEACTIVATING", "STOPPING")


class LaunchError(RuntimeError):
    """A launch that failed for good (after retries and fallbacks). The scaler records it and
    launches again on its next pass, whatever the cause, so it carries no retry hint."""


@dataclass(frozen=True)
class LaunchRequest:
    """One task to start.

    ``task_id`` is Outpost's id for the task (what the runner sees as ``OUTPOST_TASK_ID``);
    ``client_token`` makes the launch idempotent (ECS ``clientToken``; deterministic per
    dispatch and attempt, or per warm-pool slot); ``env`` is the runner's environment.
    """

    agent: str
    task_id: str
    client_token: str
    env: dict[str, str]
    spot: bool = True


@dataclass(frozen=True)
class LaunchedTask:
    task_id: str
    runtime_ref: str  # ECS task ARN, or the local task id
    capacity: str  # FARGATE_SPOT, FARGATE or LOCAL


@dataclass(frozen=True)
class RuntimeTask:
    """A task the runtime reports as existing (for the reconciler)."""

    runtime_ref: str
    agent: str | None
    task_id: str | None
    last_status: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.last_status in LIVE_STATUSES


class Runtime(Protocol):
    name: str

    def launch(self, requests: list[LaunchRequest]) -> list[LaunchedTask | LaunchError]:
        """Start tasks; one result per request, in order (a LaunchError for a failed one)."""

    def stop(self, runtime_ref: str, reason: str) -> None:
        """Stop a task (idempotent: stopping a stopped or unknown task is not an error)."""

    def list_tasks(self) -> list[RuntimeTask]:
        """Every live task this runtime started for Outpost."""

    def close(self, *, stop_tasks: bool = True) -> None:
        """Release resources; the local runtime also stops its tasks (``stop_tasks``) on a clean
        shutdown. ECS tasks are independent of the control plane and keep running."""


_TOKEN_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def client_token(base: str, attempt: int, suffix: str = "") -> str:
    """A deterministic ECS clientToken (at most 64 characters) for ``base`` and ``attempt``.

    Same inputs, same token: a retried RunTask call after a timeout does not start a second
    task. ``suffix`` distinguishes a different request for the same attempt (the on-demand
    fallback after a Spot capacity error), since ECS refuses a token reused with other
    parameters.
    """
    tail = f"-a{attempt}" + (f"-{suffix}" if suffix else "")
    clean = _TOKEN_CHARS.sub("_", base)
    if len(clean) + len(tail) > 64:
        digest = hashlib.sha256(base.encode()).hexdigest()
        clean = clean[: 64 - len(tail) - 17] + "-" + digest[:16]
    return clean + tail
