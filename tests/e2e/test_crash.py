"""Crashes lose nothing: `outpost dev`'s control plane killed (SIGKILL) at random moments while
200 dispatches are in flight, and a runner killed in the middle of its job.

The kill points come from a seeded generator, as progress (after how many jobs started) and a
sub-second delay, so they do not depend on the machine's speed; the seed is printed (and named
in every failure), and OUTPOST_CRASH_SEED=<seed> replays the same kill points. Both tests use
`outpost dev`'s own engine timings (control_plane.dev.LOCAL_DEFAULTS), not the shortened ones
of the other e2e tests.

Cost: about one CPU-second per dispatch (half of it the emulator's DynamoDB, which applies
requests one at a time), so the first test takes about two minutes on a quiet 2-core machine.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import httpx

from control_plane.dev import LOCAL_DEFAULTS
from control_plane.store.codec import decode_item, parse_iso
from tests.e2e.helpers import TERMINAL, Dev, alive, runner_pid_of, start_dev, stop_dev, wait_for

DISPATCHES = 200
MAX_KILLS = 5
# outpost dev's own engine timings, over the shortened ones start_dev uses by default
DEV_TIMINGS = dict(LOCAL_DEFAULTS)
RECONCILE_INTERVAL_S = float(DEV_TIMINGS["OUTPOST_RECONCILE_INTERVAL_S"])


def _seed() -> int:
    seed = int(os.environ.get("OUTPOST_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"crash test seed: {seed} (OUTPOST_CRASH_SEED={seed} replays it)")
    return seed


def _retrying(call: Callable[[], httpx.Response], what: str, timeout: float = 60.0) -> httpx.Response:
    """A request that outlasts a control-plane restart: retried while nothing answers (an answer,
    5xx included, is the control plane's word and goes to the caller's assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: no answer within {timeout} s") from None
        time.sleep(0.2)


def _environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in raw if b"=" in entry)


class Killer(threading.Thread):
    """SIGKILLs the control plane MAX_KILLS times, spread over the whole run: each kill comes once
    a seeded random number of jobs have started (so the spread does not depend on how fast the
    machine is), a random fraction of a second later (so it lands in a random request or pass),
    and only once the control plane the dev supervisor restarted serves again."""

    def __init__(self, dev: Dev, rng: random.Random, runs: Path) -> None:
        super().__init__(daemon=True)
        self.dev, self.rng, self.runs = dev, rng, runs
        self.thresholds = sorted(rng.sample(range(DISPATCHES - 20), MAX_KILLS))
        self.kills: list[int] = []  # jobs started at each kill
        self.stopping = threading.Event()

    def _serving(self, pid: int) -> bool:
        try:
            live = httpx.get(f"{self.dev.url}/health/live", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
        return live and self.dev.control_plane_pid() == pid

    def run(self) -> None:
        for threshold in self.thresholds:
            while (started := len(os.listdir(self.runs))) < threshold:
                if self.stopping.wait(0.1):
                    return
            if self.stopping.wait(self.rng.uniform(0.0, 1.0)):
                return
            pid = self.dev.control_plane_pid()
            os.kill(pid, signal.SIGKILL)
            self.kills.append(started)
            while not self.stopping.is_set():  # the supervisor's restart
                new = self.dev.control_plane_pid()
                if new != pid and self._serving(new):
                    break
                time.sleep(0.1)


def test_control_plane_killed_at_random_moments_loses_no_dispatch_and_runs_none_twice(tmp_path):
    seed = _seed()
    rng = random.Random(seed)
    dev = start_dev(tmp_path / "state", extra_env=DEV_TIMINGS)
    marks = tmp_path / "runs"
    marks.mkdir()
    killer = Killer(dev, rng, marks)
    try:
        admin = {"Authorization": f"Bearer {dev.admin_key}"}
        with httpx.Client(base_url=dev.url, timeout=30) as client:
            tenant = client.post(
                "/tenants", json={"name": "crash", "max_running": 50, "max_queued": DISPATCHES}, headers=admin
            ).json()
        tables = _environment(dev.control_plane_pid())
        as_tenant = {"Authorization": f"Bearer {tenant['api_key']}"}
        client = httpx.Client(base_url=dev.url, headers=as_tenant, timeout=30)

        def submit(index: int) -> str:
            # each job notes each run of it; the key makes a retried POST the same dispatch
            body = {"agent": "shell", "task": f"echo $$ >> {marks}/{index}; echo ok"}
            key = {"Idempotency-Key": f"crash-{index}"}
            reply = _retrying(lambda: client.post("/dispatch", json=body, headers=key), f"dispatch {index}")
            assert reply.status_code == 202, reply.text
            return str(reply.json()["dispatch_id"])

        killer.start()
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(submit, range(DISPATCHES)))
        assert len(set(ids)) == DISPATCHES

        def settled() -> bool:
            for status in ("PENDING", "RUNNING"):
                reply = _retrying(
                    lambda s=status: client.get("/dispatches", params={"status": s, "limit": 1}), "list"
                )
                if reply.json()["items"]:
                    return False
            return True

        try:
            wait_for(settled, 600, interval=0.5, what="every dispatch ended")
        except AssertionError as error:
            stuck = [r for r in _all_dispatches(client) if r["status"] not in TERMINAL]
            tail = "\n".join(dev.stderr_path.read_text(errors="replace").splitlines()[-60:])
            raise AssertionError(
                f"{error} (seed {seed}, kills after {killer.kills} jobs); {len(stuck)} not ended, "
                f"such as {stuck[:3]}\noutpost dev stderr:\n{tail}"
            ) from None
        killer.stopping.set()
        killer.join(timeout=60)
        context = f"seed {seed}, kills after {killer.kills} jobs had started"
        print(
            f"{len(killer.kills)} control-plane kills, after {killer.kills} of {DISPATCHES} jobs had started"
        )
        assert len(killer.kills) == MAX_KILLS, f"kills missing: dispatches ended first ({context})"

        records = _all_dispatches(client)
        assert sorted(r["dispatch_id"] for r in records) == sorted(ids), context
        endpoint = tables["OUTPOST_AWS_ENDPOINT_URL"]
        _check_records(endpoint, tables, tenant["tenant_id"], ids, marks, context)
        client.close()
    finally:
        killer.stopping.set()
        stop_dev(dev)


def _all_dispatches(client: httpx.Client) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = _retrying(lambda p=params: client.get("/dispatches", params=p), "list").json()
        records.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return records


def _check_records(
    endpoint: str, tables: dict[str, str], tenant_id: str, ids: list[str], marks: Path, context: str
) -> None:
    """Every dispatch ran once and is whole, audited, and holds no run slot: read from the tables."""
    ddb = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="outpost-local",
        aws_secret_access_key="outpost-local",  # noqa: S106 - the emulator accepts any
    )
    items = [
        decode_item(item)
        for page in ddb.get_paginator("scan").paginate(TableName=tables["OUTPOST_DISPATCHES_TABLE"])
        for item in page["Items"]
    ]
    dispatches = {i["dispatch_id"]: i for i in items if str(i["dispatch_id"]).startswith("d-")}
    tasks = [i for i in items if str(i["dispatch_id"]).startswith("task#")]
    assert sorted(dispatches) == sorted(ids), f"dispatch items besides the 200 ({context})"
    claims: dict[str, list[str]] = {}
    for task in tasks:
        assert task["state"] != "claiming", f"a claim left half-done: {task} ({context})"
        if task.get("job"):
            claims.setdefault(task["job"], []).append(task["task_id"])
    for index, dispatch_id in enumerate(ids):
        item = dispatches[dispatch_id]
        where = f"{dispatch_id} ({context}): {item}"
        # one run of the job, by one claim, on the first attempt, with its whole result
        runs = (marks / str(index)).read_text().split() if (marks / str(index)).exists() else []
        assert len(runs) == 1, f"the job ran {len(runs)} times: {where}"
        assert claims.get(dispatch_id) == [item["task_id"]], f"claims {claims.get(dispatch_id)}: {where}"
        assert item["status"] == "COMPLETED" and item["exit_code"] == 0, where
        assert item["attempt"] == 1 and item["version"] == 3, where  # PENDING, RUNNING, COMPLETED
        assert item["tenant_status"] == f"{tenant_id}#COMPLETED" and not item["admitted"], where
        assert {"patch.diff", "summary.json", "manifest.json"} <= set(item["artifacts"]), where
        moments = [parse_iso(item["timestamps"][s]) for s in ("PENDING", "RUNNING", "COMPLETED")]
        assert moments == sorted(moments), where
        assert item["created_at"] == item["timestamps"]["PENDING"], where
        assert item["updated_at"] == item["timestamps"]["COMPLETED"], where
    # the audit trail of each: its creation and its two transitions, each once
    trail: dict[str, list[tuple[str, int]]] = {}
    pages = ddb.get_paginator("query").paginate(
        TableName=tables["OUTPOST_AUDIT_TABLE"],
        KeyConditionExpression="tenant_id = :t",
        ExpressionAttributeValues={":t": {"S": tenant_id}},
    )
    for entry in (decode_item(item) for page in pages for item in page["Items"]):
        if entry["action"].startswith("dispatch."):
            trail.setdefault(entry["target"], []).append((entry["action"], entry["details"]["version"]))
    expected = [("dispatch.create", 1), ("dispatch.transition", 2), ("dispatch.transition", 3)]
    for dispatch_id in ids:
        assert sorted(trail.get(dispatch_id, [])) == expected, (
            f"audit of {dispatch_id}: {trail.get(dispatch_id)} ({context})"
        )
    tenant = ddb.get_item(TableName=tables["OUTPOST_TENANTS_TABLE"], Key={"tenant_id": {"S": tenant_id}})
    slots = decode_item(tenant["Item"]).get("run_slots", 0)
    assert slots == 0, f"{slots} run slots still taken after every dispatch ended ({context})"


def test_a_runner_killed_mid_job_fails_its_dispatch_within_the_reconcile_interval(tmp_path):
    dev = start_dev(tmp_path / "state", extra_env=DEV_TIMINGS)
    try:
        pid_file = tmp_path / "agent.pid"
        created = dev.dispatch(f"echo $$ > {pid_file}; exec sleep 300")
        dispatch_id = created["dispatch_id"]
        dev.wait_status(dispatch_id, {"RUNNING"})
        agent = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 20, what="agent"))
        runner = runner_pid_of(dev, agent)
        os.kill(runner, signal.SIGKILL)  # no report, no clean-up: what a crash leaves
        killed = time.monotonic()
        final = dev.wait_status(dispatch_id, TERMINAL | {"PENDING"}, timeout=4 * RECONCILE_INTERVAL_S)
        took = time.monotonic() - killed
        print(
            f"runner killed: {final['status']} after {took:.2f} s (reconcile interval {RECONCILE_INTERVAL_S:g} s)"
        )
        assert final["status"] == "FAILED", final
        assert "without reporting" in (final["error"] or ""), final
        assert took <= RECONCILE_INTERVAL_S, f"{took:.2f} s, over the reconcile interval"
        wait_for(
            lambda: not alive(agent), RECONCILE_INTERVAL_S, what="the killed runner's agent process gone"
        )
    finally:
        stop_dev(dev)
