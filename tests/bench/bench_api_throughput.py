"""Sustained POST /dispatch: creates per second and their latency, with concurrent clients.

One `outpost dev` on loopback; the admin API (POST /tenants) makes a tenant whose quotas
(max_running, max_queued) leave room for every dispatch of the run. CLIENTS threads, each with
its own keep-alive HTTP client, post shell dispatches back to back for WARMUP_S, then for
WINDOWS windows of WINDOW_S. Each dispatch is the full create path of production: the API key's
check, validation, the idempotency and quota checks, the PENDING record, the enqueue, 202.

The engine's loops are off (OUTPOST_ENGINE_ENABLED=false): on two cores, runner processes
launched for the queued jobs would take the CPU the API is being measured on. The dispatches
stay queued.

Figures: api_dispatch_create_per_s - the creates completed over the measured time (its
distribution: the rate in each window); api_p99_ms - the 99th percentile of the creates'
latencies (every create of the measured windows is a sample).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.bench.figures import distribution, p99
from tests.e2e.helpers import start_dev, stop_dev

CLIENTS = int(os.environ.get("OUTPOST_BENCH_API_CLIENTS", "8"))
WARMUP_S = 2.0
WINDOWS = 30
WINDOW_S = 0.5


def _tenant(url: str, admin_key: str) -> str:
    reply = httpx.post(
        f"{url}/tenants",
        json={"name": "bench-throughput", "max_running": 10_000, "max_queued": 100_000},
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=30,
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["api_key"])


def _load(url: str, api_key: str) -> tuple[list[tuple[float, float]], list[str], float]:
    """(completion time, latency s) per create; errors; the measured period's start."""
    done: list[tuple[float, float]] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30) as http:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    reply = http.post("/dispatch", json={"agent": "shell", "task": "echo ok"})
                except httpx.HTTPError as error:
                    with lock:
                        errors.append(repr(error))
                    continue
                ended = time.perf_counter()
                with lock:
                    if reply.status_code == 202:
                        done.append((ended, ended - started))
                    else:
                        errors.append(f"{reply.status_code} {reply.text[:200]}")

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    time.sleep(WARMUP_S)
    measured_from = time.perf_counter()
    time.sleep(WINDOWS * WINDOW_S)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    return done, errors, measured_from


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="outpost-bench-api-") as tmp:
        dev = start_dev(Path(tmp) / "state", {"OUTPOST_ENGINE_ENABLED": "false"})
        try:
            api_key = _tenant(dev.url, dev.admin_key)
            done, errors, start = _load(dev.url, api_key)
        finally:
            stop_dev(dev)
    if errors:
        raise AssertionError(f"{len(errors)} creates failed, e.g. {errors[:3]}")
    end = start + WINDOWS * WINDOW_S
    measured = [(t, latency) for t, latency in done if start <= t < end]
    rates = [
        sum(1 for t, _ in measured if start + i * WINDOW_S <= t < start + (i + 1) * WINDOW_S) / WINDOW_S
        for i in range(WINDOWS)
    ]
    latencies_ms = [latency * 1000 for _, latency in measured]
    rate = len(measured) / (WINDOWS * WINDOW_S)
    print(
        f"POST /dispatch with {CLIENTS} clients: {rate:.1f} creates/s over {WINDOWS * WINDOW_S:.0f} s"
        f" ({len(measured)} creates); latency p50 {sorted(latencies_ms)[len(latencies_ms) // 2]:.0f} ms,"
        f" p99 {p99(latencies_ms):.0f} ms"
    )
    return {
        "api_dispatch_create_per_s": distribution(rates, digits=1, value=round(rate, 1), clients=CLIENTS),
        "api_p99_ms": distribution(latencies_ms, digits=1, clients=CLIENTS),
    }


if __name__ == "__main__":
    main()
