"""A full synthesis: every stage of the app through the cdk-nag gate, as `make synth` runs it.

The pinned CDK CLI synthesizes app.py (all stages, the AwsSolutions and NIST 800-53 packs
registered) into a temporary output directory, so that the cdk.out of `make synth` and of the
tests is left alone. A synthesis takes tens of seconds on two cores, so this figure has
SAMPLES samples (OUTPOST_BENCH_SYNTH_SAMPLES), not the 30 of the others: 30 would take longer
than the rest of `make bench` together.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.figures import distribution

ROOT = Path(__file__).resolve().parents[2]
CDK = ROOT / "node_modules" / ".bin" / "cdk"
SAMPLES = int(os.environ.get("OUTPOST_BENCH_SYNTH_SAMPLES", "2"))


def synth_once() -> float:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = Path(tempfile.mkdtemp(prefix="outpost-bench-synth-"))
    try:
        started = time.perf_counter()
        subprocess.run(  # noqa: S603 - the project's pinned CLI
            [str(CDK), "synth", "--quiet", "--output", str(out)],
            cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        templates = list(out.glob("assembly-*/*.template.json"))
        if not templates:
            raise AssertionError(f"the synthesis wrote no templates into {out}")
        return elapsed
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> dict[str, Any]:
    samples = []
    for n in range(SAMPLES):
        samples.append(synth_once())
        print(f"synthesis {n + 1}/{SAMPLES}: {samples[-1]:.1f} s", flush=True)
    return {"synth_all_stages_s": distribution(samples, digits=1)}


if __name__ == "__main__":
    main()
