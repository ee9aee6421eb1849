"""Fleet counters kept beside the dispatches, so that /health/fleet reads 27 small items
instead of scanning an hour of dispatches.

Items (in the dispatches table, keys prefixed "stat#", expiring after two days), per 5-minute
bucket:
- `stat#created#<bucket>`: per `<agent>#<status>`, how many dispatches created in that bucket are
  now in that status (a transition moves one count from the old status to the new one);
- `stat#finished#<bucket>`: per `n#<agent>#<status>` how many reached a final status in that
  bucket, `ms#<agent>` the sum of their run times and `dn#<agent>` how many had one;
- `stat#gauge`: per `<agent>#<status>` the number of dispatches now in each non-final status.

Counters are figures for operators, never read to decide anything about a dispatch. So a change
is added up in memory and written about once a second, one ADD per counter item for all the
changes since the last write (`FLUSH_INTERVAL_S`), rather than two or three writes for every
creation and transition, which set most of a dispatch's DynamoDB calls. A reader in the same
process writes what is pending first. A control plane that dies without stopping loses at most
the last second's counts; a stopping one writes them.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from control_plane.lifecycle import TERMINAL, Status
from control_plane.store.codec import batch_get, encode, now

log = logging.getLogger("outpost.stats")
COUNTER_TTL = timedelta(days=2)
GAUGE_KEY = "stat#gauge"
# Five-minute buckets: "the last hour" is the current bucket and the 12 before it (60-65 min).
# Finer buckets cost more items per read; 27 keep /health/fleet far under its 500 ms budget.
BUCKET_MINUTES = 5
FLUSH_INTERVAL_S = 1.0


def _minute(moment: datetime) -> str:
    """The bucket a moment falls in, named by its first minute."""
    return moment.replace(minute=moment.minute - moment.minute % BUCKET_MINUTES).strftime("%Y-%m-%dT%H:%M")


@dataclass
class AgentWindow:
    """One agent's figures for a time window."""

    by_status: dict[str, int] = field(default_factory=dict)  # created in window, by current status
    finished: dict[str, int] = field(default_factory=dict)  # reached a final status in window
    run_ms: int = 0
    runs_timed: int = 0
    current: dict[str, int] = field(default_factory=dict)  # now in each non-final status


def created_key(created_at: datetime) -> str:
    return f"stat#created#{_minute(created_at)}"


def finished_key(finished_at: datetime) -> str:
    return f"stat#finished#{_minute(finished_at)}"


class FleetStats:
    def __init__(self, *, client: Any, table: str) -> None:
        self._client = client
        self._table = table
        self._pending: dict[tuple[str, bool], Counter[str]] = {}
        self._pending_lock = threading.Lock()
        _flusher.watch(self)

    def count(self, key: str, deltas: dict[str, int], expires: bool = True) -> None:
        """Add `deltas` to one counter item at the next flush."""
        with self._pending_lock:
            self._pending.setdefault((key, expires), Counter()).update(deltas)

    def flush(self) -> None:
        """Write every pending count: one ADD per counter item."""
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        for (key, expires), deltas in pending.items():
            self.add(key, dict(deltas), expires=expires)

    def add(self, key: str, deltas: dict[str, int], expires: bool = True) -> None:
        """ADD `deltas` (attribute -> increment) to one counter item, in one write."""
        deltas = {k: v for k, v in deltas.items() if v}
        if not deltas:
            return
        names = {f"#a{i}": name for i, name in enumerate(deltas)}
        values = {f":v{i}": encode(delta) for i, delta in enumerate(deltas.values())}
        expression = "ADD " + ", ".join(f"#a{i} :v{i}" for i in range(len(deltas)))
        if expires:
            names["#x"] = "expires_at"
            values[":x"] = encode(int((now() + COUNTER_TTL).timestamp()))
            expression += " SET #x = :x"
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"dispatch_id": encode(key)},
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except Exception:
            log.exception("fleet counter not updated", extra={"counter": key})

    def record_created(self, *, agent: str, created_at: datetime) -> None:
        self.count(created_key(created_at), {f"{agent}#{Status.PENDING}": 1})
        self.count(GAUGE_KEY, {f"{agent}#{Status.PENDING}": 1}, expires=False)

    def record_transition(
        self,
        *,
        agent: str,
        previous: Status,
        to: Status,
        created_at: datetime,
        at: datetime,
        run_seconds: float | None,
    ) -> None:
        self.count(created_key(created_at), {f"{agent}#{previous}": -1, f"{agent}#{to}": 1})
        gauge = {f"{agent}#{previous}": -1}
        if to not in TERMINAL:
            gauge[f"{agent}#{to}"] = 1
        self.count(GAUGE_KEY, gauge, expires=False)
        if to in TERMINAL:
            finished = {f"n#{agent}#{to}": 1}
            if run_seconds is not None:
                finished[f"ms#{agent}"] = int(run_seconds * 1000)
                finished[f"dn#{agent}"] = 1
            self.count(finished_key(at), finished)

    def window(self, *, minutes: int = 60) -> dict[str, AgentWindow]:
        """Per-agent figures for the last `minutes` minutes, in whole buckets (so up to 5 more)."""
        self.flush()
        moment = now()
        steps = range(0, minutes + 1, BUCKET_MINUTES)
        minute_keys = list(dict.fromkeys(_minute(moment - timedelta(minutes=m)) for m in steps))
        keys = [GAUGE_KEY] + [f"stat#{kind}#{m}" for kind in ("created", "finished") for m in minute_keys]
        agents: dict[str, AgentWindow] = defaultdict(AgentWindow)
        for item in batch_get(self._client, self._table, key="dispatch_id", values=keys):
            key = item.pop("dispatch_id")
            item.pop("expires_at", None)
            for name, count in item.items():
                if key == GAUGE_KEY:
                    agent, status = name.split("#", 1)
                    agents[agent].current[status] = agents[agent].current.get(status, 0) + count
                elif key.startswith("stat#created#"):
                    agent, status = name.split("#", 1)
                    agents[agent].by_status[status] = agents[agent].by_status.get(status, 0) + count
                else:
                    kind, rest = name.split("#", 1)
                    if kind == "n":
                        agent, status = rest.split("#", 1)
                        agents[agent].finished[status] = agents[agent].finished.get(status, 0) + count
                    elif kind == "ms":
                        agents[rest].run_ms += count
                    elif kind == "dn":
                        agents[rest].runs_timed += count
        return dict(agents)


class _Flusher:
    """One thread for the process that flushes every live FleetStats each FLUSH_INTERVAL_S
    (a stopping control plane flushes its own once more: control_plane.engine.app)."""

    def __init__(self) -> None:
        self._stats: weakref.WeakSet[FleetStats] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, stats: FleetStats) -> None:
        with self._lock:
            self._stats.add(stats)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fleet-stats", daemon=True)
                self._thread.start()

    def flush_all(self) -> None:
        with self._lock:
            live = list(self._stats)
        for stats in live:
            stats.flush()

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_INTERVAL_S)
            self.flush_all()


_flusher = _Flusher()
