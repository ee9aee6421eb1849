"""Load on an Outpost API: tenants dispatching trivial shell jobs and reading them back.

Run with locust (in .venv-load, docs/measuring.md), against a deployed stage's ApiUrl or an
`outpost dev`:

    .venv-load/bin/locust -f tests/load/locustfile.py --headless --host "$OUTPOST_URL" \
        --keys "$OUTPOST_API_KEY" --users 20 --spawn-rate 5 --run-time 2m --report load.json

Each simulated user takes one tenant key of ``--keys`` (round robin) and, with a pause of
``--wait`` seconds between requests, mixes (weights in brackets): POST /dispatch of
``--shell-task`` on the shell agent [1], GET /dispatch/{id} of one of its dispatches [4],
GET /dispatches [2], GET /dispatch/{id}/logs [1].

A 429 (the tenant's quota or budget) is what Outpost promises under overload, not an error: it
is recorded under its own name ("POST /dispatch (429)"), out of the endpoint's latencies and
out of the failures. Any other answer outside 2xx is a failure, named by its status.

``--report`` writes JSON (fields in docs/measuring.md): per endpoint and in total, requests,
requests/s, p50/p95/p99/max latency in ms, failures, 5xx answers and 429 answers.
"""

from __future__ import annotations

import itertools
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import requests
from locust import User, between, events, task
from locust.env import Environment

QUOTA = " (429)"
TIMEOUT_S = 30.0  # as the outpost CLI's own requests
_keys = itertools.count()


class HttpStatusError(Exception):
    """An answer outside 2xx (and not 429): its message starts with the status, e.g. "HTTP 503"."""


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("Outpost")
    group.add_argument(
        "--keys",
        env_var="OUTPOST_LOAD_KEYS",
        default="",
        help="comma-separated tenant API keys; the users share them round robin",
    )
    group.add_argument(
        "--report",
        env_var="OUTPOST_LOAD_REPORT",
        default="load-report.json",
        help="where to write the JSON report",
    )
    group.add_argument(
        "--shell-task",
        env_var="OUTPOST_LOAD_TASK",
        default="true",
        help="the shell command each dispatch runs",
    )
    group.add_argument(
        "--wait",
        env_var="OUTPOST_LOAD_WAIT",
        default="0.5,1.5",
        help="MIN,MAX seconds between a user's requests",
    )


@events.init.add_listener
def _check(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is not None and not [key for key in options.keys.split(",") if key.strip()]:
        sys.exit("--keys (or OUTPOST_LOAD_KEYS): at least one tenant API key is needed")


class Tenant(User):
    """One API client of one tenant."""

    def wait_time(self) -> float:
        low, high = (float(part) for part in self.environment.parsed_options.wait.split(","))
        return float(between(low, high)(self))

    def on_start(self) -> None:
        options = self.environment.parsed_options
        keys = [key.strip() for key in options.keys.split(",") if key.strip()]
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {keys[next(_keys) % len(keys)]}"
        self.base = (self.host or "").rstrip("/")
        self.shell_task = options.shell_task
        self.dispatches: list[str] = []

    def on_stop(self) -> None:
        self.session.close()

    def call(self, method: str, path: str, name: str, **kwargs: Any) -> Any:
        """One request, recorded under ``name``; the JSON answer of a 2xx, else None."""
        started = time.perf_counter()
        error: Exception | None = None
        answer: Any = None
        length = 0
        try:
            reply = self.session.request(method, self.base + path, timeout=TIMEOUT_S, **kwargs)
            length = len(reply.content)
            if reply.status_code == 429:
                name += QUOTA
            elif not 200 <= reply.status_code < 300:
                error = HttpStatusError(f"HTTP {reply.status_code}: {reply.text[:200]}")
            else:
                answer = reply.json()
        except (requests.RequestException, ValueError) as exc:
            error = exc
        self.environment.events.request.fire(
            request_type=method,
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=error,
            context={},
        )
        return answer

    def known(self) -> str | None:
        return random.choice(self.dispatches) if self.dispatches else None

    @task(1)
    def dispatch(self) -> None:
        created = self.call(
            "POST", "/dispatch", "/dispatch", json={"agent": "shell", "task": self.shell_task}
        )
        if created:
            self.dispatches = [*self.dispatches[-19:], created["dispatch_id"]]

    @task(4)
    def read(self) -> None:
        if dispatch_id := self.known():
            self.call("GET", f"/dispatch/{dispatch_id}", "/dispatch/{id}")
        else:
            self.dispatch()  # a user reads only its own dispatches: it makes one first

    @task(2)
    def page(self) -> None:
        self.call("GET", "/dispatches?limit=20", "/dispatches")

    @task(1)
    def logs(self) -> None:
        if dispatch_id := self.known():
            self.call("GET", f"/dispatch/{dispatch_id}/logs", "/dispatch/{id}/logs")
        else:
            self.dispatch()


# -- the report --------------------------------------------------------------------------------


def _figures(entry: Any, seconds: float) -> dict[str, Any]:
    def ms(fraction: float) -> float:
        return round(float(entry.get_response_time_percentile(fraction)), 1) if entry.num_requests else 0.0

    return {
        "requests": entry.num_requests,
        "requests_per_s": round(entry.num_requests / seconds, 2) if seconds else 0.0,
        "failures": entry.num_failures,
        "p50_ms": ms(0.5),
        "p95_ms": ms(0.95),
        "p99_ms": ms(0.99),
        "max_ms": round(float(entry.max_response_time or 0), 1),
    }


def report(environment: Environment) -> dict[str, Any]:
    stats = environment.stats
    seconds = (
        max(stats.total.last_request_timestamp - stats.total.start_time, 0.0)
        if stats.total.num_requests
        else 0.0
    )
    status_5xx: dict[str, int] = {}
    for error in stats.errors.values():
        if str(error.error).startswith("HTTP 5"):
            key = f"{error.method} {error.name}"
            status_5xx[key] = status_5xx.get(key, 0) + error.occurrences
    endpoints: dict[str, dict[str, Any]] = {}
    quota: dict[str, int] = {}
    for (name, method), entry in sorted(stats.entries.items()):
        if name.endswith(QUOTA):
            key = f"{method} {name.removesuffix(QUOTA)}"
            quota[key] = quota.get(key, 0) + entry.num_requests
            continue
        key = f"{method} {name}"
        endpoints[key] = {**_figures(entry, seconds), "status_5xx": status_5xx.get(key, 0), "quota_429": 0}
    for key, count in quota.items():
        endpoints.setdefault(key, {**_figures(_Empty(), seconds), "status_5xx": 0, "quota_429": 0})
        endpoints[key]["quota_429"] = count
    answered = [entry for (name, _), entry in stats.entries.items() if not name.endswith(QUOTA)]
    total = {
        "requests": sum(e.num_requests for e in answered),
        "failures": sum(e.num_failures for e in answered),
        "status_5xx": sum(status_5xx.values()),
        "quota_429": sum(quota.values()),
    }
    total["requests_per_s"] = round(total["requests"] / seconds, 2) if seconds else 0.0
    options = environment.parsed_options
    return {
        "host": environment.host,
        "users": getattr(options, "num_users", None),
        "spawn_rate": getattr(options, "spawn_rate", None),
        "duration_s": round(seconds, 2),
        "total": total,
        "endpoints": endpoints,
        "errors": [
            {"endpoint": f"{e.method} {e.name}", "error": str(e.error), "count": e.occurrences}
            for e in stats.errors.values()
        ],
    }


class _Empty:
    """The figures of an endpoint that answered only 429."""

    num_requests = num_failures = 0
    max_response_time = 0.0


@events.quitting.add_listener
def _write_report(environment: Environment, **_: Any) -> None:
    if environment.parsed_options is None or environment.runner is None:
        return
    if type(environment.runner).__name__ == "WorkerRunner":
        return  # in a distributed run the master writes the one report, from the merged figures
    path = Path(environment.parsed_options.report)
    path.write_text(json.dumps(report(environment), indent=2) + "\n")
