"""Real agent CLIs run by the real runner alone, several jobs at once.

For the cases whose proof is the runner's own report (a provider error ends the job FAILED
with the CLI's message): the runner claims its job from the runner tests' fake control plane
(tests/agents/runner_harness.py) instead of `outpost dev`, which costs a control plane, an
emulator and a scaler pass per job. The agent's settings reach the runner as they do in a
task (OUTPOST_AGENT_BASE_URL, OUTPOST_AGENT_MODEL), the key as the agent's own variable.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.agents.real.conftest import CLI_DIRS
from tests.agents.runner_harness import FakeControlPlane, make_job, runner_env, start_runner


def run_jobs(
    agent: str, tasks: Mapping[str, str], *, env: Mapping[str, str], root: Path, timeout_s: float = 120
) -> dict[str, dict[str, Any]]:
    """Runs one job per task at once; each case's reported result (outcome, error, summary)."""
    planes: dict[str, FakeControlPlane] = {}
    runners: dict[str, subprocess.Popen[str]] = {}
    path = os.pathsep.join([*map(str, CLI_DIRS), os.environ["PATH"]])
    try:
        for case, task in tasks.items():
            plane = planes[case] = FakeControlPlane(job=make_job(task, agent=agent, timeout_s=timeout_s))
            plane.start()
            workspace, tmp = root / case / "workspace", root / case / "tmp"
            workspace.mkdir(parents=True)
            tmp.mkdir()
            # The CLIs' own temporary files (gemini writes a report of every API error) stay
            # with the test, not in the machine's /tmp.
            job_env = {"PATH": path, "TMPDIR": str(tmp), **env}
            runners[case] = start_runner(runner_env(plane, workspace, agent=agent, **job_env))
        for case, runner in runners.items():
            _, stderr = runner.communicate(timeout=timeout_s + 60)
            assert runner.returncode == 0, f"{case}: runner exited {runner.returncode}\n{stderr}"
        return {case: plane.result for case, plane in planes.items()}
    finally:
        for runner in runners.values():
            if runner.poll() is None:
                runner.kill()
                runner.communicate()
        for plane in planes.values():
            plane.stop()
