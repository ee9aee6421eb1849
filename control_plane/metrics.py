"""Every CloudWatch metric the control plane emits, named once.

The CDK dashboards and alarms import these constants, so this module must stay importable with
the standard library alone. Metrics are written as CloudWatch Embedded Metric Format (EMF)
documents, one JSON line on stdout each; the awslogs driver ships them and CloudWatch extracts
the metrics, so emitting never makes a network call on the request path. Durations and waits are
emitted as single values, never pre-aggregated: CloudWatch computes p50/p90/p99 from them.

Each metric is defined once in CATALOGUE (name, unit, dimensions, meaning); emit() refuses any
other dimension set, and a value outside a closed dimension's set (Reason, StartKind, Status).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

NAMESPACE = "Outpost/ControlPlane"

# -- dimensions ----------------------------------------------------------------------------------

DIM_AGENT = "Agent"  # a registry agent name (agents/registry.py)
DIM_STATUS = "Status"  # a final dispatch status: FINAL_STATUSES
DIM_START_KIND = "StartKind"  # START_KINDS
DIM_REASON = "Reason"  # why a dispatch failed: FAILURE_REASONS

# The final statuses of control_plane/lifecycle.py (a test keeps them equal).
FINAL_STATUSES: tuple[str, ...] = ("COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED")
START_WARM = "warm"  # a warm-pool task claimed the job
START_COLD = "cold"  # a task launched for the job claimed it
START_KINDS: tuple[str, ...] = (START_WARM, START_COLD)

# Why a dispatch ended FAILED or TIMED_OUT: one value per way the engine ends a dispatch badly.
REASON_AGENT_ERROR = "agent-error"  # the runner reported FAILED for any other cause (agent, checkout)
REASON_API = "api"  # the runner reported FAILED: the model API refused or broke (401/429/5xx, stream)
REASON_NETWORK = "network"  # the runner reported FAILED: the model API was unreachable
REASON_TIMEOUT = "timeout"  # TIMED_OUT: by the runner's own deadline or the reconciler's
REASON_OOM = "oom"  # the task stopped without a report, its container killed for memory
REASON_TASK_STOPPED = "task-stopped"  # the task stopped without a report for any other cause
REASON_TASK_LOST = "task-lost"  # the reconciler found the dispatch's task gone from the runtime
REASON_INTERRUPTED = "interrupted"  # Spot or runner interruptions used up the attempts
REASON_NOT_STARTED = "not-started"  # no task started the job within max_pending_s
REASON_DEAD_LETTERED = "dead-lettered"  # its queue message was dead-lettered (claims kept failing)
REASON_BUDGET = "budget-exceeded"  # the model gateway stopped it: a tenant or dispatch budget is spent
FAILURE_REASONS: tuple[str, ...] = (
    REASON_AGENT_ERROR,
    REASON_API,
    REASON_NETWORK,
    REASON_TIMEOUT,
    REASON_OOM,
    REASON_TASK_STOPPED,
    REASON_TASK_LOST,
    REASON_INTERRUPTED,
    REASON_NOT_STARTED,
    REASON_DEAD_LETTERED,
    REASON_BUDGET,
)
# Reasons only the runner reports (FAILED with its error's kind); the reconciler ends dispatches
# for the others but a spent budget (the gateway's, and the tenant's own limit, no platform
# fault), so its failures metric (RECONCILER_FAILURES) takes only RECONCILER_REASONS.
RUNNER_REASONS: tuple[str, ...] = (REASON_AGENT_ERROR, REASON_API, REASON_NETWORK)
RECONCILER_REASONS: tuple[str, ...] = tuple(
    r for r in FAILURE_REASONS if r not in (*RUNNER_REASONS, REASON_BUDGET)
)
# The values a closed dimension may take; Agent is open (the registry's agents).
DIMENSION_VALUES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {DIM_STATUS: FINAL_STATUSES, DIM_START_KIND: START_KINDS, DIM_REASON: FAILURE_REASONS}
)

# -- metrics -------------------------------------------------------------------------------------

DISPATCHES_CREATED = "DispatchesCreated"
DISPATCHES_FINISHED = "DispatchesFinished"
DISPATCH_DURATION = "DispatchDuration"
QUEUE_WAIT = "QueueWait"
WARM_POOL_HITS = "WarmPoolHits"
COLD_STARTS = "ColdStarts"
CLAIM_WAIT = "ClaimWait"
TASKS_LAUNCHED = "TasksLaunched"
LAUNCH_FAILURES = "LaunchFailures"
DISPATCHES_REQUEUED = "DispatchesRequeued"
DISPATCH_FAILURES = "DispatchFailures"
DISPATCHES_DEAD_LETTERED = "DispatchesDeadLettered"
RECONCILER_FAILURES = "DispatchesFailedByReconciler"
CLAIM_FAILURES = "ClaimFailures"
TASK_FAILURES = "TaskFailures"
WARM_POOL_SIZE = "WarmPoolSize"
WARM_POOL_IDLE = "WarmPoolIdle"
DISPATCHES_RUNNING = "DispatchesRunning"


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str  # a CloudWatch unit
    dimensions: tuple[str, ...]
    meaning: str  # when it is emitted; dashboards may show it


_AGENT = (DIM_AGENT,)
CATALOGUE: Mapping[str, Metric] = MappingProxyType(
    {
        m.name: m
        for m in (
            Metric(DISPATCHES_CREATED, "Count", _AGENT, "a dispatch accepted (PENDING)"),
            Metric(
                DISPATCHES_FINISHED, "Count", (DIM_AGENT, DIM_STATUS), "a dispatch entered a final status"
            ),
            Metric(
                DISPATCH_DURATION,
                "Seconds",
                (DIM_AGENT, DIM_STATUS),
                "RUNNING -> final status, one value per dispatch that ran",
            ),
            Metric(QUEUE_WAIT, "Seconds", _AGENT, "created -> RUNNING, one value per start"),
            # a start is a warm-pool hit when the claiming task was launched before the job was
            # created (it waited in the pool); otherwise a cold start
            Metric(WARM_POOL_HITS, "Count", _AGENT, "a warm-pool task claimed a job"),
            Metric(COLD_STARTS, "Count", _AGENT, "a task launched for a job claimed it"),
            Metric(
                CLAIM_WAIT,
                "Seconds",
                (DIM_AGENT, DIM_START_KIND),
                "created -> claimed, one value per claim",
            ),
            Metric(TASKS_LAUNCHED, "Count", _AGENT, "tasks the scaler launched"),
            Metric(LAUNCH_FAILURES, "Count", _AGENT, "a task launch the runtime refused"),
            Metric(DISPATCHES_REQUEUED, "Count", _AGENT, "a running dispatch requeued (interruption)"),
            Metric(
                DISPATCH_FAILURES,
                "Count",
                (DIM_AGENT, DIM_REASON),
                "a dispatch ended FAILED or TIMED_OUT, by why (errors by type)",
            ),
            Metric(
                DISPATCHES_DEAD_LETTERED,
                "Count",
                _AGENT,
                "a PENDING dispatch failed because its queue dead-lettered its message",
            ),
            Metric(
                RECONCILER_FAILURES,
                "Count",
                (DIM_AGENT, DIM_REASON),
                "a dispatch the reconciler ended (not started, timed out, task lost, dead-lettered)",
            ),
            Metric(
                CLAIM_FAILURES,
                "Count",
                _AGENT,
                "a claim by a task of the agent refused (token spent, no queue), failed with an "
                "error, or past its commit deadline with a job in hand (the job left queued)",
            ),
            Metric(
                TASK_FAILURES,
                "Count",
                _AGENT,
                "a task that stopped abnormally: not stopped by Outpost, and failed to start, "
                "exited non-zero, was killed, or was lost by the runtime",
            ),
            Metric(WARM_POOL_SIZE, "Count", _AGENT, "the configured warm-pool size, each scaler pass"),
            Metric(
                WARM_POOL_IDLE,
                "Count",
                _AGENT,
                "unclaimed tasks (starting or waiting for a job), each scaler pass",
            ),
            Metric(
                DISPATCHES_RUNNING,
                "Count",
                _AGENT,
                "tasks running a claimed job (concurrency), each scaler pass",
            ),
        )
    }
)
UNITS: Mapping[str, str] = MappingProxyType({m.name: m.unit for m in CATALOGUE.values()})
DIMENSIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {m.name: m.dimensions for m in CATALOGUE.values()}
)


def _stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# Replaceable so that tests can read what was emitted.
sink: Callable[[str], None] = _stdout


def emf_document(values: Mapping[str, float], dimensions: Mapping[str, str]) -> dict:
    """One EMF document carrying `values` (metric name -> value) under one dimension set."""
    dims = sorted(dimensions)
    return {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [dims],
                    "Metrics": [{"Name": name, "Unit": UNITS[name]} for name in values],
                }
            ],
        },
        **dimensions,
        **values,
    }


def emit(values: Mapping[str, float], **dimensions: str) -> None:
    for name in values:
        if set(DIMENSIONS[name]) != set(dimensions):
            raise ValueError(f"metric {name} takes dimensions {DIMENSIONS[name]}, got {sorted(dimensions)}")
    for dimension, value in dimensions.items():
        allowed = DIMENSION_VALUES.get(dimension)
        if allowed is not None and value not in allowed:
            raise ValueError(f"dimension {dimension} takes one of {allowed}, got {value!r}")
    sink(json.dumps(emf_document(values, dimensions), separators=(",", ":")))


def dispatch_created(agent: str) -> None:
    emit({DISPATCHES_CREATED: 1}, Agent=agent)


def dispatch_started(agent: str, queue_wait_s: float) -> None:
    emit({QUEUE_WAIT: round(queue_wait_s, 3)}, Agent=agent)


def dispatch_finished(agent: str, status: str, duration_s: float | None) -> None:
    values: dict[str, float] = {DISPATCHES_FINISHED: 1}
    if duration_s is not None:
        values[DISPATCH_DURATION] = round(duration_s, 3)
    emit(values, Agent=agent, Status=status)


def dispatch_failed(agent: str, reason: str, *, by_reconciler: bool = False) -> None:
    """A dispatch ended FAILED or TIMED_OUT for `reason`; counted again when the reconciler ended it."""
    values: dict[str, float] = {DISPATCH_FAILURES: 1}
    if by_reconciler:
        values[RECONCILER_FAILURES] = 1
    emit(values, Agent=agent, Reason=reason)


def dispatch_dead_lettered(agent: str) -> None:
    """A PENDING dispatch failed by the reconciler's dead-letter step: a failure of its own kind too."""
    emit({DISPATCHES_DEAD_LETTERED: 1}, Agent=agent)
    dispatch_failed(agent, REASON_DEAD_LETTERED, by_reconciler=True)


def claim_failed(agent: str) -> None:
    emit({CLAIM_FAILURES: 1}, Agent=agent)


def task_failed(agent: str) -> None:
    emit({TASK_FAILURES: 1}, Agent=agent)


def pool_state(agent: str, *, size: int, idle: int, running: int) -> None:
    """The scaler's view of one agent's pool, from what its pass already read (no extra read)."""
    emit({WARM_POOL_SIZE: size, WARM_POOL_IDLE: idle, DISPATCHES_RUNNING: running}, Agent=agent)
