"""Engine metrics: cold starts against warm-pool hits, plus counters for /internal/engine.

A start is a warm-pool hit when the task that claimed the job was launched before the job was
created (it was waiting in the pool); otherwise it is a cold start (a task launched for it).
Emitted as CloudWatch EMF lines like the control plane's other metrics, and kept in memory per
replica for the local figures.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from control_plane import metrics as cp_metrics

NAMESPACE = cp_metrics.NAMESPACE
WARM_POOL_HITS = "WarmPoolHits"  # Count, by Agent
COLD_STARTS = "ColdStarts"  # Count, by Agent
CLAIM_WAIT = "ClaimWait"  # Seconds, by Agent x StartKind: created -> claimed
TASKS_LAUNCHED = "TasksLaunched"  # Count, by Agent
LAUNCH_FAILURES = "LaunchFailures"  # Count, by Agent
DISPATCHES_REQUEUED = "DispatchesRequeued"  # Count, by Agent

UNITS = {
    WARM_POOL_HITS: "Count",
    COLD_STARTS: "Count",
    CLAIM_WAIT: "Seconds",
    TASKS_LAUNCHED: "Count",
    LAUNCH_FAILURES: "Count",
    DISPATCHES_REQUEUED: "Count",
}


def _emit(values: dict[str, float], **dimensions: str) -> None:
    dims = sorted(dimensions)
    document = {
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
    cp_metrics.sink(json.dumps(document, separators=(",", ":")))


@dataclass
class StartMetrics:
    counts: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record_start(self, *, agent: str, warm: bool, queue_wait_s: float) -> None:
        name = WARM_POOL_HITS if warm else COLD_STARTS
        with self._lock:
            self.counts[(agent, name)] += 1
        _emit({name: 1}, Agent=agent)
        _emit({CLAIM_WAIT: round(queue_wait_s, 3)}, Agent=agent, StartKind="warm" if warm else "cold")

    def record(self, name: str, agent: str, value: int = 1) -> None:
        with self._lock:
            self.counts[(agent, name)] += value
        _emit({name: value}, Agent=agent)

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            out: dict[str, dict[str, int]] = {}
            for (agent, name), value in self.counts.items():
                out.setdefault(agent, {})[name] = value
            return out
