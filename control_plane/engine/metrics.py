"""Engine metrics: cold starts against warm-pool hits, plus counters for /internal/engine.

A start is a warm-pool hit when the task that claimed the job was launched before the job was
created (it was waiting in the pool); otherwise it is a cold start (a task launched for it).
The names live with every other metric in control_plane/metrics.py; this module emits them
through it and keeps counts in memory per replica for the local figures.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from control_plane.metrics import CLAIM_WAIT, COLD_STARTS, START_COLD, START_WARM, WARM_POOL_HITS, emit


@dataclass
class StartMetrics:
    counts: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record_start(self, *, agent: str, warm: bool, queue_wait_s: float) -> None:
        name = WARM_POOL_HITS if warm else COLD_STARTS
        with self._lock:
            self.counts[(agent, name)] += 1
        emit({name: 1}, Agent=agent)
        emit({CLAIM_WAIT: round(queue_wait_s, 3)}, Agent=agent, StartKind=START_WARM if warm else START_COLD)

    def record(self, name: str, agent: str, value: int = 1) -> None:
        with self._lock:
            self.counts[(agent, name)] += value
        emit({name: value}, Agent=agent)

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            out: dict[str, dict[str, int]] = {}
            for (agent, name), value in self.counts.items():
                out.setdefault(agent, {})[name] = value
            return out
