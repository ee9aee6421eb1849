"""Health: liveness, readiness, component checks, and the fleet view (admin only, cached 30 s)."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from agents.registry import AGENTS
from control_plane.api.deps import AdminDep, ClientsDep, SettingsDep
from control_plane.aws import AwsClients
from control_plane.lifecycle import ACTIVE, QUEUED, Status
from control_plane.settings import Settings

router = APIRouter(prefix="/health", tags=["health"])
# Without these the control plane cannot take or read a dispatch at all.
CRITICAL = ("dynamodb",)


def _checks(settings: Settings, clients: AwsClients) -> dict[str, Any]:
    checks = {
        "dynamodb": lambda: [
            clients.dynamodb.describe_table(TableName=t)
            for t in (settings.dispatches_table, settings.tenants_table, settings.audit_table)
        ],
        # a listing under the tenants' prefix: the task role may list nothing else (no HeadBucket)
        "s3": lambda: clients.s3.list_objects_v2(
            Bucket=settings.artifacts_bucket, Prefix="tenants/", MaxKeys=1
        ),
        "sqs": lambda: [
            clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
            for url in settings.dispatch_queue_urls.values()
        ],
    }
    if settings.runtime == "ecs":  # the local runtime has no cluster to ask about
        checks["ecs"] = lambda: _check_cluster(clients, settings.cluster_arn or "")
    return checks


def _check_cluster(clients: AwsClients, cluster_arn: str) -> None:
    reply = clients.ecs.describe_clusters(clusters=[cluster_arn])
    if not any(c.get("status") == "ACTIVE" for c in reply.get("clusters", [])):
        raise RuntimeError("cluster not ACTIVE")


def _run(check: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        check()
    except Exception as error:
        # name the failure, not its text: error messages can carry account ids and ARNs
        return {"status": "unhealthy", "error": type(error).__name__}
    return {"status": "healthy", "latency_ms": round((time.perf_counter() - started) * 1000, 1)}


@router.get("")
def health(settings: SettingsDep, clients: ClientsDep) -> JSONResponse:
    """Each dependency's state; unhealthy (503) when a critical one fails, degraded when another does."""
    checks = _checks(settings, clients)
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        results = dict(zip(checks, pool.map(_run, checks.values()), strict=True))
    failed = {name for name, result in results.items() if result["status"] != "healthy"}
    overall = "unhealthy" if failed & set(CRITICAL) else "degraded" if failed else "healthy"
    return JSONResponse(
        {"status": overall, "components": results}, status_code=503 if overall == "unhealthy" else 200
    )


@router.get("/live")
def live() -> dict[str, str]:
    """The process answers; nothing else is checked (a dependency outage must not restart us)."""
    return {"status": "alive"}


@router.get("/ready")
def ready(settings: SettingsDep, clients: ClientsDep) -> JSONResponse:
    """Ready when the dispatches table answers: without it no request can be served."""
    result = _run(lambda: clients.dynamodb.describe_table(TableName=settings.dispatches_table))
    ok = result["status"] == "healthy"
    return JSONResponse({"status": "ready" if ok else "not ready"}, status_code=200 if ok else 503)


def _system() -> dict[str, Any]:
    """CPU load and memory of the control plane's host (from /proc; no extra dependency)."""
    cpus = os.cpu_count() or 1
    load1 = os.getloadavg()[0]
    memory: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                name, value = line.split(":", 1)
                memory[name] = int(value.split()[0]) * 1024
    except OSError:
        pass
    total, available = memory.get("MemTotal", 0), memory.get("MemAvailable", 0)
    return {
        "cpu_count": cpus,
        "cpu_percent": round(min(load1 / cpus, 1.0) * 100, 1),
        "load_1m": round(load1, 2),
        "memory_total_bytes": total,
        "memory_used_bytes": total - available,
        "memory_percent": round((total - available) / total * 100, 1) if total else None,
    }


def fleet_snapshot(request: Request) -> dict[str, Any]:
    """The fleet view, computed from counters (store.stats): constant work however busy the hour."""
    stores = request.app.state.stores
    window = stores.stats.window(minutes=60)
    pools = request.app.state.task_control.pools()
    agents: dict[str, Any] = {}
    by_status: dict[str, int] = {}
    for name in AGENTS:
        figures = window.get(name)
        current = figures.current if figures else {}
        finished = figures.finished if figures else {}
        done = sum(finished.values())
        # a cancelled run says nothing about the agent's success
        judged = done - finished.get(str(Status.CANCELLED), 0)
        pool = pools.get(name)
        agents[name] = {
            "pool_size": pool.size if pool else None,
            "idle": pool.idle if pool else None,
            "active": sum(max(current.get(str(s), 0), 0) for s in ACTIVE),
            "queued": sum(max(current.get(str(s), 0), 0) for s in QUEUED),
            "finished_last_hour": done,
            "success_rate": round(finished.get(str(Status.COMPLETED), 0) / judged, 4) if judged else None,
            "avg_duration_s": round(figures.run_ms / figures.runs_timed / 1000, 3)
            if figures and figures.runs_timed
            else None,
        }
        for status, count in (figures.by_status if figures else {}).items():
            if count:
                by_status[status] = by_status.get(status, 0) + count
    last_hour = {
        "by_status": by_status,
        "by_agent": {
            name: {s: c for s, c in (window[name].by_status.items()) if c}
            for name in window
            if name in AGENTS
        },
    }
    return {"generated_at": time.time(), "agents": agents, "system": _system(), "last_hour": last_hour}


_cache_lock = threading.Lock()


@router.get("/fleet")
def fleet(request: Request, admin: AdminDep, settings: SettingsDep) -> dict[str, Any]:
    """Per agent pool, activity, success and duration; the host; the last hour. Cached 30 s."""
    state = request.app.state
    with _cache_lock:
        cached = getattr(state, "fleet_cache", None)
        if cached is not None and time.monotonic() - cached[0] < settings.fleet_cache_s:
            return {**cached[1], "cached": True}
    snapshot = fleet_snapshot(request)
    with _cache_lock:
        state.fleet_cache = (time.monotonic(), snapshot)
    return {**snapshot, "cached": False}
