"""/health/fleet uncached with 10,000 dispatches in the last hour (target: under 500 ms).

10,000 dispatch records spread over the last hour are put into the dispatches table on a moto
server (over HTTP), with the fleet counters they imply. 500 of them go through the real store
(create, RUNNING, a final status: every write, counter update and audit record of production);
the rest are bulk-loaded with batch writes (the same items, counters added per bucket), because
moto takes ~14 dispatches/s through the full path. The endpoint is then timed with its cache
off. Its cost does not grow with the number of dispatches: it reads the 5-minute counters
(store/stats.py), 27 small items, never the dispatches.
"""

from __future__ import annotations

import logging
import os
import random
import statistics
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from agents.registry import AGENTS
from control_plane import metrics
from control_plane.aws import make_clients
from control_plane.bootstrap import ensure_resources
from control_plane.emulator import EmulatorServer
from control_plane.lifecycle import TERMINAL, Status
from control_plane.main import create_app
from control_plane.settings import Settings
from control_plane.store import Actor, DispatchRecord, Stores
from control_plane.store.codec import encode_item, iso, now
from control_plane.store.dispatches import new_dispatch_id
from control_plane.store.stats import GAUGE_KEY, created_key, finished_key
from tests.bench.figures import distribution

DISPATCHES = int(os.environ.get("OUTPOST_BENCH_DISPATCHES", "10000"))
THROUGH_STORE = min(500, DISPATCHES)
SAMPLES = 30
TARGET_MS = 500.0
ADMIN_KEY = "op_admin_" + "b" * 40
AGENT_NAMES = list(AGENTS)
OUTCOMES = (Status.COMPLETED, Status.COMPLETED, Status.COMPLETED, Status.FAILED, Status.TIMED_OUT)


def _plan(i: int, rng: random.Random, start: datetime) -> tuple[str, datetime, list[Status]]:
    """Agent, creation time and the statuses dispatch i goes through after PENDING."""
    created = start - timedelta(seconds=rng.uniform(60, 3500))
    roll = i % 10
    path = (
        [] if roll >= 8 else [Status.RUNNING] if roll == 7 else [Status.RUNNING, OUTCOMES[i % len(OUTCOMES)]]
    )
    return AGENT_NAMES[i % len(AGENT_NAMES)], created, path


def _through_store(stores: Stores, plans: list[tuple[str, datetime, list[Status]]]) -> None:
    actor = Actor.system("bench")

    def one(plan: tuple[str, datetime, list[Status]]) -> None:
        agent, created, path = plan
        record = DispatchRecord(
            dispatch_id=new_dispatch_id(), tenant_id="t-bench", agent=agent, task="bench", timeout_s=600,
            created_at=iso(created),
        )  # fmt: skip
        stores.dispatches.create(record=record, actor=actor)
        for status in path:
            stores.dispatches.transition(dispatch_id=record.dispatch_id, to=status, actor=actor)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, plans))


def _bulk_load(settings: Settings, stores: Stores, plans: list[tuple[str, datetime, list[Status]]]) -> None:
    dynamodb = make_clients(settings).dynamodb
    counters: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    items = []
    for agent, created, path in plans:
        status = path[-1] if path else Status.PENDING
        timestamps = {str(Status.PENDING): iso(created)}
        moment = created
        for step in path:
            moment = min(moment + timedelta(seconds=30), now())
            timestamps[str(step)] = iso(moment)
        record = DispatchRecord(
            dispatch_id=new_dispatch_id(), tenant_id="t-bench", agent=agent, task="bench", timeout_s=600,
            status=status, created_at=iso(created), updated_at=iso(moment), timestamps=timestamps,
            version=1 + len(path), enqueued=True,
        )  # fmt: skip
        items.append(record.to_item())
        counters[created_key(created)][f"{agent}#{status}"] += 1
        if status in TERMINAL:
            counters[finished_key(moment)][f"n#{agent}#{status}"] += 1
            counters[finished_key(moment)][f"ms#{agent}"] += 30_000
            counters[finished_key(moment)][f"dn#{agent}"] += 1
        else:
            counters[GAUGE_KEY][f"{agent}#{status}"] += 1

    def write(batch: list[dict]) -> None:
        pending = {settings.dispatches_table: [{"PutRequest": {"Item": encode_item(i)}} for i in batch]}
        while pending:
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, [items[i : i + 25] for i in range(0, len(items), 25)]))
    for key, deltas in counters.items():
        stores.stats.add(key, dict(deltas), expires=key != GAUGE_KEY)


def _populate(settings: Settings, count: int) -> str:
    stores = Stores.from_settings(settings, make_clients(settings))
    rng = random.Random(7)
    start = now()
    plans = [_plan(i, rng, start) for i in range(count)]
    t0 = time.perf_counter()
    _through_store(stores, plans[:THROUGH_STORE])
    t1 = time.perf_counter()
    _bulk_load(settings, stores, plans[THROUGH_STORE:])
    t2 = time.perf_counter()
    return (
        f"populated {count} dispatches: {THROUGH_STORE} through the store in {t1 - t0:.0f} s, "
        f"{count - THROUGH_STORE} bulk-loaded in {t2 - t1:.0f} s"
    )


def main() -> dict[str, Any]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    server = EmulatorServer()
    server.start()
    metrics.sink = lambda line: None  # 10,000 EMF lines on stdout would bury the figures
    try:
        endpoint = server.url
        resources = ensure_resources(endpoint_url=endpoint, prefix="bench")
        app_settings = Settings.model_validate(
            {
                "env": "local",
                "aws_endpoint_url": endpoint,
                "admin_key": ADMIN_KEY,
                "dispatch_queue_urls": resources.dispatch_queue_urls,
                "artifacts_bucket": resources.artifacts_bucket,
                "fleet_cache_s": 0,  # measure the uncached path every time
                **resources.tables,
            }
        )
        client = TestClient(create_app(app_settings))
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}

        def measure() -> list[float]:
            client.get("/health/fleet", headers=headers)  # warm the connection pool
            samples = []
            for _ in range(SAMPLES):
                t0 = time.perf_counter()
                reply = client.get("/health/fleet", headers=headers)
                samples.append((time.perf_counter() - t0) * 1000)
                assert reply.status_code == 200 and reply.json()["cached"] is False
            return samples

        empty = measure()
        print(_populate(app_settings, DISPATCHES), flush=True)
        full = measure()
        body = client.get("/health/fleet", headers=headers).json()
        total = sum(body["last_hour"]["by_status"].values())
        print(f"last hour as /health/fleet reports it: {total} dispatches, {body['last_hour']['by_status']}")
        for label, samples in (("0 dispatches", empty), (f"{DISPATCHES} dispatches", full)):
            ordered = sorted(samples)
            print(
                f"/health/fleet uncached, {label}: median {statistics.median(samples):.1f} ms, "
                f"p95 {ordered[int(len(ordered) * 0.95) - 1]:.1f} ms, max {ordered[-1]:.1f} ms "
                f"({SAMPLES} calls; target < {TARGET_MS:.0f} ms)"
            )
        verdict = "PASS" if statistics.median(full) < TARGET_MS else "MISS"
        print(
            f"fleet health under {TARGET_MS:.0f} ms (median) with {DISPATCHES} dispatches in the last hour: {verdict}"
        )
        if total != DISPATCHES:
            raise AssertionError(f"fleet view counts {total} dispatches, expected {DISPATCHES}")
        return {
            "health_fleet_uncached_ms": distribution(full, digits=1, dispatches_last_hour=DISPATCHES),
            "health_fleet_uncached_empty_ms": distribution(empty, digits=1),
        }
    finally:
        server.stop()


if __name__ == "__main__":
    main()
