"""`outpost status`, `outpost list` and `outpost usage` show tokens and cost: the real CLI
process against the app served on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from control_plane.usage import record_cost
from tests.control_plane.helpers import serving
from tests.control_plane.test_usage import TODAY, _finished, _summary

OUTPOST = Path(sys.executable).with_name("outpost")


def _outpost(base: str, tenant: dict, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OUTPOST_URL": base, "OUTPOST_API_KEY": tenant["api_key"]}
    done = subprocess.run([str(OUTPOST), *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done


def test_cli_shows_tokens_and_cost(app: Any, client: TestClient, tenant: dict) -> None:
    priced = _finished(
        client,
        tenant,
        cost=record_cost(_summary(input=400_000, cached=100_000, output=20_000), model="gpt-5"),
    )
    reported = _finished(
        client,
        tenant,
        agent="claude",
        cost=record_cost(_summary(input=10, cached=0, output=5, usd=0.25), model=None),
    )
    silent = _finished(client, tenant, cost=None)
    with serving(app) as (host, port):
        base = f"http://{host}:{port}"
        status = _outpost(base, tenant, "status", priced).stdout
        as_json = _outpost(base, tenant, "status", priced, "--json").stdout
        listing = _outpost(base, tenant, "list").stdout
        usage = _outpost(base, tenant, "usage", "--since", TODAY.isoformat()).stdout

    assert json.loads(as_json)["cost_usd"] == 0.5875
    assert (
        "usage:     tokens 400000 in (100000 cached) / 20000 out, $0.5875 (price-table)"
        in status.splitlines()
    )
    assert listing.splitlines()[0].split() == ["DISPATCH", "STATUS", "AGENT", "CREATED", "USAGE"]
    lines = {line.split()[0]: line for line in listing.splitlines()[1:]}
    assert lines[priced].endswith("tokens 400000 in (100000 cached) / 20000 out, $0.5875 (price-table)")
    assert lines[reported].endswith("tokens 10 in / 5 out, $0.2500 (agent)")
    assert lines[silent].endswith("no usage reported")
    rows = [line.split() for line in usage.splitlines()[2:]]
    assert rows == [
        [TODAY.isoformat(), "claude", "1", "10", "0", "5", "0.2500"],
        [TODAY.isoformat(), "codex", "1", "400000", "100000", "20000", "0.5875"],
        ["total", "2", "400010", "100000", "20005", "0.8375"],
    ]
