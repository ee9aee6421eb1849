"""Runs every tests/bench/bench_*.py module's main() and prints its figures.

`make bench` runs `.venv/bin/python tests/bench/run.py`; pass module names to run only some:
`.venv/bin/python tests/bench/run.py bench_fleet_health`.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def main(argv: list[str]) -> int:
    sys.path[:0] = [str(ROOT), str(HERE)]
    names = argv or sorted(p.stem for p in HERE.glob("bench_*.py"))
    failed = 0
    for name in names:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            importlib.import_module(name).main()
        except Exception as error:  # report and go on with the other benchmarks
            failed += 1
            print(f"!! {name} failed: {type(error).__name__}: {error}", flush=True)
        print(f"== {name}: {time.perf_counter() - started:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
