"""A stand-in for the `claude` CLI that `outpost dev` runs as the claude agent: it reaches its
model through the model gateway exactly as the real CLI would (``ANTHROPIC_BASE_URL`` +
``/v1/messages``, the key from ``ANTHROPIC_API_KEY``), and shows what it was given.

Configured through the claude agent's ``extra`` settings (OUTPOST_AGENT_SETTINGS):

- ``STANDIN_ENV_FILE``: write its environment there (JSON);
- ``STANDIN_PROVIDER``: the fake provider's own URL, for calls that skip the gateway;
- ``STANDIN_BENCH_RESULTS`` and ``STANDIN_BENCH_SAMPLES``: time that many streamed calls
  through the gateway and as many straight to the provider, alternating, and write the
  seconds of each (JSON) there, instead of the one call it otherwise makes; with
  ``STANDIN_BENCH_PAUSE_S`` between the pairs, as an agent works between its model calls, and
  one series per ``STANDIN_BENCH_DELAYS_MS`` (sent as ``x-bench-first-byte-ms``, for a fake
  provider that takes that long to answer).

It prints the ``result`` event the claude adapter reads, and exits 0 when its calls worked.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

SCRIPT = r'''
import http.client, json, os, sys, time
from urllib.parse import urlsplit

env = dict(os.environ)
if env.get("STANDIN_ENV_FILE"):
    with open(env["STANDIN_ENV_FILE"], "w") as out:
        json.dump(env, out)

BODY = json.dumps({"model": "claude-sonnet-4-5", "stream": True, "max_tokens": 64,
                   "messages": [{"role": "user", "content": "say hi"}]}).encode()
connections = {}

def streamed(base, headers):
    """One streamed call on a kept-alive connection: (status, seconds to the last byte, body)."""
    parts = urlsplit(base)
    conn = connections.get(parts.netloc)
    if conn is None:
        conn = connections[parts.netloc] = http.client.HTTPConnection(parts.netloc, timeout=60)
    started = time.perf_counter()
    conn.request("POST", parts.path.rstrip("/") + "/v1/messages", body=BODY,
                 headers={"content-type": "application/json", "anthropic-version": "2023-06-01", **headers})
    reply = conn.getresponse()
    data = reply.read()
    elapsed = time.perf_counter() - started
    if reply.getheader("connection", "").lower() == "close":
        conn.close()
        connections.pop(parts.netloc, None)
    return reply.status, elapsed, data

gateway = (env["ANTHROPIC_BASE_URL"], {"x-api-key": env["ANTHROPIC_API_KEY"]})
if env.get("STANDIN_BENCH_RESULTS"):
    direct = (env["STANDIN_PROVIDER"], {"x-api-key": "direct"})
    samples = int(env.get("STANDIN_BENCH_SAMPLES", "40"))
    pause = float(env.get("STANDIN_BENCH_PAUSE_S", "0"))
    times = {}
    for delay in env.get("STANDIN_BENCH_DELAYS_MS", "0").split(","):
        series = times[delay] = {"gateway": [], "direct": []}
        for index in range(samples + 5):  # five warm-up pairs
            time.sleep(pause)
            for name, (base, headers) in (("gateway", gateway), ("direct", direct)):
                status, elapsed, _ = streamed(base, {**headers, "x-bench-first-byte-ms": delay})
                assert status == 200, (name, status)
                if index >= 5:
                    series[name].append(elapsed)
    with open(env["STANDIN_BENCH_RESULTS"], "w") as out:
        json.dump(times, out)
    ok = True
else:
    status, _, data = streamed(*gateway)
    ok = status == 200 and b"message_stop" in data
    print(data.decode(errors="replace"), file=sys.stderr)
print(json.dumps({"type": "result", "subtype": "success" if ok else "error", "is_error": not ok,
                  "result": "done" if ok else "the model call failed"}))
sys.exit(0 if ok else 1)
'''


def install(directory: Path) -> Path:
    """Writes the stand-in as ``directory/claude``; put ``directory`` first on PATH."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "claude"
    path.write_text(f"#!{sys.executable}\n{SCRIPT}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def host_path(directory: Path) -> str:
    return os.pathsep.join([str(directory), os.environ["PATH"]])
