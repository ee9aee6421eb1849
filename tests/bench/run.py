"""Runs every tests/bench/bench_*.py module's main(), prints its figures and writes them as JSON.

`make bench` runs `.venv/bin/python tests/bench/run.py`; pass module names to run only some:
`.venv/bin/python tests/bench/run.py bench_fleet_health`.

Each module's main() returns its figures (tests/bench/figures.py): name -> min, median, p99 and
n samples; other entries it returns (a breakdown table) are kept under "extras". The results
go to bench-results.json at the project's root:

- one key per figure with its headline number (FIGURES lists the expected ones);
- "details": each figure's distribution (min, median, p99, n) and its goal and verdict;
- "goals": the verdict (PASS, MISS, or MISSING when no module produced the figure) per goal;
- "machine": cores, CPU model, Python version, date and git commit of the run;
- "modules": each module's duration and error, if it failed.

The run exits 1 if a module failed; a missed goal is reported, not an error.
"""

from __future__ import annotations

import importlib
import json
import operator
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUTPUT = ROOT / "bench-results.json"

# The figures `make bench` reports, with their unit, in the order of the table.
FIGURES = {
    "warm_dispatch_to_running_p50_s": "s",
    "warm_dispatch_to_running_p99_s": "s",
    "cold_dispatch_to_running_p50_s": "s",
    "control_plane_overhead_p50_ms": "ms",
    "api_dispatch_create_per_s": "/s",
    "api_p99_ms": "ms",
    "ddb_calls_per_dispatch": "",
    "sqs_calls_per_dispatch": "",
    "runtask_calls_per_dispatch": "",
    "describe_tasks_calls_per_dispatch": "",
    "s3_calls_per_dispatch": "",
    "health_fleet_uncached_ms": "ms",
    "synth_all_stages_s": "s",
    "gateway_added_latency_p50_ms": "ms",
}

Compare = Callable[[float, float], bool]
GOALS: dict[str, tuple[Compare, float, str]] = {
    "warm_dispatch_to_running_p50_s": (operator.lt, 1.0, "< 1 s"),
    "control_plane_overhead_p50_ms": (operator.lt, 100.0, "< 100 ms"),
    "ddb_calls_per_dispatch": (operator.le, 8, "<= 8"),
    "runtask_calls_per_dispatch": (operator.eq, 1, "== 1"),
    "describe_tasks_calls_per_dispatch": (operator.eq, 0, "== 0"),
    "health_fleet_uncached_ms": (operator.lt, 500.0, "< 500 ms"),
    "api_dispatch_create_per_s": (operator.ge, 50.0, ">= 50/s"),
    "gateway_added_latency_p50_ms": (operator.lt, 10.0, "< 10 ms"),
}


def _figures():  # type: ignore[no-untyped-def]  # imported once sys.path holds the root
    from tests.bench import figures

    return figures


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)  # noqa: S603, S607
        return done.stdout.strip()

    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def collect(results: dict[str, Any], modules: dict[str, Any]) -> dict[str, Any]:
    """The JSON document from each module's returned entries."""
    figures = _figures()
    report: dict[str, Any] = {}
    details: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    for module, returned in results.items():
        for name, value in (returned or {}).items():
            if figures.is_figure(value):
                details[name] = dict(value)
            else:
                extras.setdefault(module, {})[name] = value
    for name in [*FIGURES, *sorted(set(details) - set(FIGURES))]:
        if name in details:
            report[name] = figures.headline(name, details[name])
    goals: dict[str, Any] = {}
    for name, (compare, target, text) in GOALS.items():
        verdict = "MISSING" if name not in report else "PASS" if compare(report[name], target) else "MISS"
        goals[name] = {"goal": text, "value": report.get(name), "verdict": verdict}
        if name in details:
            details[name].update(goal=text, verdict=verdict)
    report.update(details=details, goals=goals, extras=extras, machine=machine(), modules=modules)
    return report


def table(report: dict[str, Any]) -> str:
    figures = _figures()
    lines = [f"{'figure':<38} {'value':>10} {'min':>9} {'median':>9} {'p99':>9} {'n':>5}  goal"]
    for name in [k for k in report["details"] if k in FIGURES] + [
        k for k in report["details"] if k not in FIGURES
    ]:
        d = report["details"][name]
        unit = FIGURES.get(name, "")
        goal = f"{d['goal']:<9} {d['verdict']}" if "verdict" in d else ""
        few = "" if (d.get("n") or 0) >= figures.MIN_SAMPLES else f"  (only {d.get('n')} samples)"
        cells = [
            f"{d[k]:>9.4g}" if isinstance(d.get(k), int | float) else f"{'-':>9}"
            for k in ("min", "median", "p99")
        ]
        lines.append(
            f"{name:<38} {report[name]:>8.4g}{unit:<2} {' '.join(cells)} {d.get('n', '-')!s:>5}  {goal}{few}"
        )
    for name in FIGURES:
        if name not in report["details"]:
            goal = report["goals"].get(name, {}).get("goal", "")
            lines.append(f"{name:<38} {'-':>10} {'':>29} {'':>5}  {goal:<9} MISSING")
    return "\n".join(lines)


def main(argv: list[str], *, bench_dir: Path = HERE, output: Path = OUTPUT) -> int:
    for path in (str(bench_dir), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
    names = argv or sorted(p.stem for p in bench_dir.glob("bench_*.py"))
    results: dict[str, Any] = {}
    modules: dict[str, Any] = {}
    for name in names:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            returned = importlib.import_module(name).main()
            results[name] = returned if isinstance(returned, dict) else {}
            modules[name] = {"seconds": None, "error": None}
        except Exception as error:  # report and go on with the other benchmarks
            traceback.print_exc()
            modules[name] = {"seconds": None, "error": f"{type(error).__name__}: {error}"}
            print(f"!! {name} failed: {type(error).__name__}: {error}", flush=True)
        modules[name]["seconds"] = round(time.perf_counter() - started, 1)
        print(f"== {name}: {modules[name]['seconds']:.1f} s", flush=True)
    report = collect(results, modules)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(report))
    print(f"\nwritten to {output}")
    return 1 if any(m["error"] for m in modules.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
