"""The model gateway's added latency on a streamed call (issue target: under 10 ms at p50).

`outpost dev` runs a claude job whose CLI is a stand-in (tests/e2e/stand_in_claude.py): from
inside the job, as an agent does, it makes SAMPLES streamed Messages calls through the gateway
(agent → control plane → fake provider, with the token check, the model and budget checks, the
key, the metering) and as many straight to the same fake provider on loopback, alternating
them after five warm-up pairs (PAUSE_S apart), and times each to its last byte. The gateway's
added latency is the difference of the two medians; min, median and p99 of both series are
printed too. Two series:

- a provider that answers at once (1-2 ms on loopback): nothing hides the gateway's own work,
  the dispatch read of each call included (on the emulator, several ms);
- a provider that takes FIRST_BYTE_MS to start its answer, as real ones do (hundreds of ms to
  the first token): the gateway checks a known token's attempt while the provider works
  (control_plane/gateway/service.py), so what remains is the proxying itself.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from tests.e2e import stand_in_claude
from tests.e2e.helpers import TERMINAL, start_dev, stop_dev, wait_for
from tests.providers.anthropic import FakeAnthropic, Usage
from tests.providers.server import Reply, Request

SAMPLES = 40
# Between pairs, as an agent works between its model calls: a call's accounting (the usage
# ADD, the audit entry, the budget counters), which runs after its answer and off the agent's
# path, is then not timed as part of the next call.
PAUSE_S = 0.2
FIRST_BYTE_MS = 100
TARGET_MS = 10.0


class SlowAnthropic(FakeAnthropic):
    """Takes the request's ``x-bench-first-byte-ms`` to start each answer, and keeps its
    connections open between streams, as a provider does (the gateway's pool reuses them)."""

    keep_alive_streams = True

    def answer(self, request: Request) -> Reply:
        time.sleep(int(request.header("x-bench-first-byte-ms") or 0) / 1000)
        return super().answer(request)


def _times() -> dict[str, dict[str, list[float]]]:
    with tempfile.TemporaryDirectory(prefix="outpost-bench-gateway-") as tmp:
        root = Path(tmp)
        stand_in_claude.install(root / "bin")
        provider = SlowAnthropic().start()
        answer = "a streamed answer of a few events, as a short model turn sends it"
        provider.script(after=provider.text(answer, Usage(input_tokens=1200, output_tokens=40)))
        results = root / "times.json"
        settings = {
            "claude": {
                "default_model": "claude-sonnet-4-5",
                "base_url": provider.url,
                "extra": {
                    "STANDIN_PROVIDER": provider.url,
                    "STANDIN_BENCH_RESULTS": str(results),
                    "STANDIN_BENCH_SAMPLES": str(SAMPLES),
                    "STANDIN_BENCH_PAUSE_S": str(PAUSE_S),
                    "STANDIN_BENCH_DELAYS_MS": f"0,{FIRST_BYTE_MS}",
                },
            }
        }
        dev = start_dev(
            root / "state",
            {
                "PATH": stand_in_claude.host_path(root / "bin"),
                "ANTHROPIC_API_KEY": "bench-anthropic-key-0123456789",
                "OUTPOST_AGENT_SETTINGS": json.dumps(settings),
            },
        )
        try:
            created = dev.dispatch("time the gateway", agent="claude", timeout_s=900)
            # polled slowly: each poll is work for the control plane the calls are timed through
            done = wait_for(
                lambda: (r := dev.get(created["dispatch_id"]))["status"] in TERMINAL and r, 600, 2.0
            )
            assert done["status"] == "COMPLETED", done
        finally:
            stop_dev(dev)
            provider.stop()
        times: dict[str, dict[str, list[float]]] = json.loads(results.read_text())
        return times


def _line(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p99 = statistics.quantiles(ms, n=100, method="inclusive")[98]
    return (
        f"  {name:<8} min {ms[0]:7.2f} ms  median {statistics.median(ms):7.2f} ms"
        f"  p99 {p99:7.2f} ms  (n={len(ms)})"
    )


def main() -> None:
    for delay, series in _times().items():
        direct, gateway = series["direct"], series["gateway"]
        kind = "at once" if delay == "0" else f"after {delay} ms"
        print(f"streamed call, the provider answering {kind}:")
        print(_line("direct", direct))
        print(_line("gateway", gateway))
        added = (statistics.median(gateway) - statistics.median(direct)) * 1000
        paired = statistics.median(g - d for g, d in zip(gateway, direct, strict=True)) * 1000
        verdict = "within" if added < TARGET_MS else "over"
        print(
            f"  gateway added latency p50 {added:.2f} ms (median of paired differences {paired:.2f} ms):"
            f" {verdict} the {TARGET_MS:g} ms target"
        )
    # Everything here shares the machine's cores: other work slows the gateway's path (two
    # processes, the emulator's DynamoDB) far more than the fake provider's.
    print(f"(machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end of the run)")


if __name__ == "__main__":
    main()
