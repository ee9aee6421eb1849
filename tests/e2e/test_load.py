"""The load test (tests/load/locustfile.py), a few seconds of it against a real `outpost dev`:
the run ends cleanly, the API answers no 5xx, and the report holds what docs/measuring.md
promises, with a tenant's 429 quota answers counted apart from the failures."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import start_dev, stop_dev

ROOT = Path(__file__).resolve().parents[2]
LOCUST = ROOT / ".venv-load" / "bin" / "locust"
LOCUSTFILE = ROOT / "tests" / "load" / "locustfile.py"
FIGURES = {
    "requests",
    "requests_per_s",
    "failures",
    "status_5xx",
    "quota_429",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
}
TOTALS = {"requests", "requests_per_s", "failures", "status_5xx", "quota_429"}


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory):
    instance = start_dev(tmp_path_factory.mktemp("load") / "state")
    try:
        yield instance
    finally:
        stop_dev(instance)


def test_a_short_load_run_reports_each_endpoint_without_5xx(dev, tmp_path: Path):
    assert LOCUST.exists(), f"{LOCUST} is missing: run `make setup` (it installs the load test's locust)"
    # a second tenant that may queue nothing: every dispatch it makes is refused with 429
    with httpx.Client(
        base_url=dev.url, headers={"Authorization": f"Bearer {dev.admin_key}"}, timeout=30
    ) as admin:
        reply = admin.post("/tenants", json={"name": "load-no-quota", "max_queued": 0, "max_running": 0})
    assert reply.status_code == 201, reply.text
    refused_key = reply.json()["api_key"]
    report_path = tmp_path / "load.json"
    run = subprocess.run(
        [
            str(LOCUST), "-f", str(LOCUSTFILE), "--headless", "--only-summary",
            "--host", dev.url, "--keys", f"{dev.api_key},{refused_key}",
            "--users", "4", "--spawn-rate", "4", "--run-time", "4s", "--wait", "0.2,0.5",
            "--report", str(report_path),
        ],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]  # locust exits 1 on any failure

    report = json.loads(report_path.read_text())
    assert report["host"] == dev.url and report["users"] == 4 and report["duration_s"] > 0
    total = report["total"]
    assert set(total) == TOTALS
    assert total["failures"] == 0 and total["status_5xx"] == 0 and report["errors"] == []
    assert total["requests"] > 0 and total["requests_per_s"] > 0
    assert total["quota_429"] >= 1  # the refused tenant's dispatches, none of them a failure
    endpoints = report["endpoints"]
    assert set(endpoints) <= {
        "POST /dispatch",
        "GET /dispatch/{id}",
        "GET /dispatches",
        "GET /dispatch/{id}/logs",
    }
    for name, figures in endpoints.items():
        assert set(figures) == FIGURES, name
        assert figures["status_5xx"] == 0 and figures["failures"] == 0, name
        assert figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"], name
    dispatch = endpoints["POST /dispatch"]
    assert dispatch["requests"] >= 1 and dispatch["quota_429"] == total["quota_429"]
    assert sum(f["requests"] for f in endpoints.values()) == total["requests"]
    # the report counts what the API accepted: one dispatch of the first tenant per 202
    with dev.client() as client:
        listed = client.get("/dispatches", params={"limit": 100}).json()["items"]
    assert len(listed) == dispatch["requests"] and all(item["agent"] == "shell" for item in listed)


def test_a_run_without_a_tenant_key_stops_before_any_request(tmp_path: Path):
    run = subprocess.run(
        [str(LOCUST), "-f", str(LOCUSTFILE), "--headless", "--host", "http://127.0.0.1:9", "--run-time", "2s",
         "--report", str(tmp_path / "load.json")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "OUTPOST_LOAD_KEYS"},
    )  # fmt: skip
    assert run.returncode == 1 and "at least one tenant API key is needed" in run.stderr
    assert not (tmp_path / "load.json").exists()
