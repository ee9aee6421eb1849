"""Local dispatch latency: dispatch-to-RUNNING, warm and cold, and the control plane's share.

Two `outpost dev` instances run a trivial shell job (`echo ok`) SAMPLES times each, one job at
a time, after one warm-up job (imports, first connections):

- warm: the shell agent's warm pool (1 in local mode, the registry's dev size) holds an idle
  runner whose claim long poll is waiting at the control plane when the job is dispatched. The
  benchmark waits for exactly that - the runner process's TCP connection to the control plane
  established (its claim request sent), seen in /proc - rather than sleeping a fixed time;
- cold: the warm pool is 0 (OUTPOST_WARM_POOL), so each job waits for a runner process to
  start (the dispatch wakes the scaler at once), which then claims it.

Figures (times on the machine's one wall clock; the record's timestamps are the control
plane's, so polling does not blur them):

- dispatch-to-RUNNING: the record's created_at to its timestamps.RUNNING;
- the control plane's share of a warm dispatch (control_plane_overhead_*): from the moment
  the client sends POST /dispatch to the later of its 202 and the RUNNING write. With the
  runner's claim already waiting, no runner code runs in that span: it is the control plane's
  own work - the create request (authentication, validation, the quota and idempotency checks
  before created_at, the record, the enqueue) and the claim's (the queue hand-off, the task
  reservation, the RUNNING write) - with the DynamoDB and SQS calls it makes, here to the
  embedded emulator. It is therefore a little more than the warm dispatch-to-RUNNING, which
  starts at created_at. The create request's own round trip is reported beside it.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.bench.figures import distribution
from tests.e2e.helpers import TERMINAL, Dev, alive, start_dev, stop_dev, wait_for

SAMPLES = int(os.environ.get("OUTPOST_BENCH_LATENCY_SAMPLES", "30"))
ESTABLISHED = "01"  # /proc/net/tcp's state code


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _claim_waiting(dev: Dev, exclude: set[str]) -> bool:
    """Whether an idle runner (a live local task not in ``exclude``) has a connection to the
    control plane established: its claim long poll is in flight (the runner makes no other
    request before it has a job, and urllib opens a connection per request)."""
    port = f"{int(dev.url.rsplit(':', 1)[1]):04X}"
    inodes: set[str] = set()
    for pid, task_id in dev.task_pids().items():
        if task_id in exclude or not alive(pid):
            continue
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    if not inodes:
        return False
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2].endswith(f":{port}") and fields[3] == ESTABLISHED and fields[9] in inodes:
            return True
    return False


def _one(dev: Dev, client: httpx.Client) -> dict[str, float]:
    sent = time.time()
    reply = client.post("/dispatch", json={"agent": "shell", "task": "echo ok"})
    answered = time.time()
    assert reply.status_code == 202, reply.text
    final = dev.wait_status(reply.json()["dispatch_id"], TERMINAL, timeout=60)
    assert final["status"] == "COMPLETED", final
    created, running = _epoch(final["created_at"]), _epoch(final["timestamps"]["RUNNING"])
    return {
        "to_running_s": running - created,
        "overhead_ms": (max(running, answered) - sent) * 1000,
        "create_ms": (answered - sent) * 1000,
        "task_id": final.get("task_id") or "",  # type: ignore[dict-item]
    }


def _series(warm: bool) -> list[dict[str, float]]:
    extra = {"OUTPOST_FLEET_CACHE_S": "0"}
    if not warm:
        extra["OUTPOST_WARM_POOL"] = '{"shell": 0}'
    with tempfile.TemporaryDirectory(prefix="outpost-bench-") as tmp:
        dev = start_dev(Path(tmp) / "state", extra)
        try:
            samples: list[dict[str, Any]] = []
            used: set[str] = set()
            with dev.client() as client:
                for _ in range(SAMPLES + 1):  # the first is a warm-up
                    if warm:
                        wait_for(lambda: _claim_waiting(dev, used), 60, interval=0.02, what="a waiting claim")
                    else:  # the previous job's runner has exited: nothing of it runs meanwhile
                        wait_for(lambda: not any(alive(p) for p in dev.task_pids()), 60, interval=0.05,
                                 what="no runner left")  # fmt: skip
                    samples.append(_one(dev, client))
                    used.add(str(samples[-1]["task_id"]))
            return samples[1:]
        finally:
            stop_dev(dev)


def main() -> dict[str, Any]:
    warm = _series(warm=True)
    cold = _series(warm=False)
    warm_running = [s["to_running_s"] for s in warm]
    cold_running = [s["to_running_s"] for s in cold]
    figures = {
        "warm_dispatch_to_running_p50_s": distribution(warm_running),
        "warm_dispatch_to_running_p99_s": distribution(warm_running),
        "cold_dispatch_to_running_p50_s": distribution(cold_running),
        "cold_dispatch_to_running_p99_s": distribution(cold_running),
        "control_plane_overhead_p50_ms": distribution([s["overhead_ms"] for s in warm], digits=1),
        "warm_create_request_p50_ms": distribution([s["create_ms"] for s in warm], digits=1),
    }
    for name, figure in figures.items():
        print(f"{name:<34} min {figure['min']:>8g}  median {figure['median']:>8g}  p99 {figure['p99']:>8g}"
              f"  (n={figure['n']})")  # fmt: skip
    return figures


if __name__ == "__main__":
    main()
