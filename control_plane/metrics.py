"""Every CloudWatch metric the control plane emits, named once.

The CDK dashboards and alarms import these constants, so this module must stay importable with
the standard library alone. Metrics are written as CloudWatch Embedded Metric Format (EMF)
documents, one JSON line on stdout each; the awslogs driver ships them and CloudWatch extracts
the metrics, so emitting never makes a network call on the request path.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping

NAMESPACE = "Outpost/ControlPlane"

# Dimensions
DIM_AGENT = "Agent"
DIM_STATUS = "Status"
DIM_START_KIND = "StartKind"  # "warm" (a warm-pool task claimed the job) or "cold"

# Metrics
DISPATCHES_CREATED = "DispatchesCreated"  # Count, by Agent: a dispatch accepted (PENDING)
DISPATCHES_FINISHED = "DispatchesFinished"  # Count, by Agent x Status: entered a final status
DISPATCH_DURATION = "DispatchDuration"  # Seconds, by Agent x Status: RUNNING -> final status
QUEUE_WAIT = "QueueWait"  # Seconds, by Agent: created -> RUNNING (time spent waiting for a task)
# The dispatch engine's (control_plane/engine): a start is a warm-pool hit when the task that
# claimed the job was launched before the job was created; otherwise a cold start.
WARM_POOL_HITS = "WarmPoolHits"  # Count, by Agent
COLD_STARTS = "ColdStarts"  # Count, by Agent
CLAIM_WAIT = "ClaimWait"  # Seconds, by Agent x StartKind: created -> claimed
TASKS_LAUNCHED = "TasksLaunched"  # Count, by Agent
LAUNCH_FAILURES = "LaunchFailures"  # Count, by Agent
DISPATCHES_REQUEUED = "DispatchesRequeued"  # Count, by Agent

UNITS: Mapping[str, str] = {
    DISPATCHES_CREATED: "Count",
    DISPATCHES_FINISHED: "Count",
    DISPATCH_DURATION: "Seconds",
    QUEUE_WAIT: "Seconds",
    WARM_POOL_HITS: "Count",
    COLD_STARTS: "Count",
    CLAIM_WAIT: "Seconds",
    TASKS_LAUNCHED: "Count",
    LAUNCH_FAILURES: "Count",
    DISPATCHES_REQUEUED: "Count",
}
DIMENSIONS: Mapping[str, tuple[str, ...]] = {
    DISPATCHES_CREATED: (DIM_AGENT,),
    DISPATCHES_FINISHED: (DIM_AGENT, DIM_STATUS),
    DISPATCH_DURATION: (DIM_AGENT, DIM_STATUS),
    QUEUE_WAIT: (DIM_AGENT,),
    WARM_POOL_HITS: (DIM_AGENT,),
    COLD_STARTS: (DIM_AGENT,),
    CLAIM_WAIT: (DIM_AGENT, DIM_START_KIND),
    TASKS_LAUNCHED: (DIM_AGENT,),
    LAUNCH_FAILURES: (DIM_AGENT,),
    DISPATCHES_REQUEUED: (DIM_AGENT,),
}


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
