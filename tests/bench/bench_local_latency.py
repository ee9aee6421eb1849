"""Local dispatch latency: dispatch-to-RUNNING and dispatch-to-COMPLETED, warm and cold.

Two `outpost dev` instances run a trivial shell job (`echo ok`) several times each:

- warm: the shell agent's warm pool (1 in local mode, the registry's dev size) holds an idle
  runner that is already long-polling its claim when the job is dispatched;
- cold: the warm pool is 0 (OUTPOST_WARM_POOL), so each job waits for a runner process to
  start (the dispatch wakes the scaler at once; its interval is 2 s in local mode), which then
  claims it.

Times come from the dispatch's own timestamps (created_at, timestamps.RUNNING,
timestamps.COMPLETED), written by the control plane, so polling does not blur them.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

from tests.e2e.helpers import Dev, start_dev, stop_dev, wait_for

SAMPLES = 5


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _idle_runner(dev: Dev) -> bool:
    reply = httpx.get(
        f"{dev.url}/health/fleet", headers={"Authorization": f"Bearer {dev.admin_key}"}, timeout=10
    )
    return bool((reply.json()["agents"]["shell"].get("idle") or 0) >= 1)


def _one(dev: Dev) -> tuple[float, float]:
    record = dev.dispatch("echo ok")
    final = dev.wait_status(
        record["dispatch_id"], {"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"}, timeout=60
    )
    assert final["status"] == "COMPLETED", final
    created = _parse(final["created_at"])
    running = (_parse(final["timestamps"]["RUNNING"]) - created).total_seconds()
    completed = (_parse(final["timestamps"]["COMPLETED"]) - created).total_seconds()
    return running, completed


def _series(warm: bool) -> list[tuple[float, float]]:
    extra = {"OUTPOST_FLEET_CACHE_S": "0"}
    if not warm:
        extra["OUTPOST_WARM_POOL"] = '{"shell": 0}'
    with tempfile.TemporaryDirectory(prefix="outpost-bench-") as tmp:
        dev = start_dev(Path(tmp) / "state", extra)
        try:
            samples = []
            for _ in range(SAMPLES + 1):  # the first is a warm-up (imports, first connections)
                if warm:
                    wait_for(lambda: _idle_runner(dev), 30, interval=0.2, what="an idle warm runner")
                    time.sleep(1.0)  # let the new runner reach its long poll
                else:
                    time.sleep(1.0)
                samples.append(_one(dev))
            return samples[1:]
        finally:
            stop_dev(dev)


def _report(kind: str, samples: list[tuple[float, float]]) -> None:
    running = [r for r, _ in samples]
    completed = [c for _, c in samples]
    print(
        f"{kind:<5} dispatch->RUNNING   median {statistics.median(running) * 1000:7.0f} ms"
        f"  min {min(running) * 1000:6.0f}  max {max(running) * 1000:6.0f}  (n={len(samples)})"
    )
    print(
        f"{kind:<5} dispatch->COMPLETED median {statistics.median(completed) * 1000:7.0f} ms"
        f"  min {min(completed) * 1000:6.0f}  max {max(completed) * 1000:6.0f}  (n={len(samples)})"
    )


def main() -> None:
    _report("warm", _series(warm=True))
    _report("cold", _series(warm=False))


if __name__ == "__main__":
    main()
