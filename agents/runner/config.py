"""The runner's settings, read from its environment (docs/design.md, "The claim protocol")."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REQUIRED = (
    "OUTPOST_CONTROL_PLANE_URL",
    "OUTPOST_CLAIM_TOKEN",
    "OUTPOST_AGENT",
    "OUTPOST_TASK_ID",
    "OUTPOST_WORKSPACE",
)

# Exit codes of the runner itself; the job's outcome is reported to the control plane.
EXIT_OK = 0  # the job ran and was reported, or no job came before the idle deadline
EXIT_ERROR = 1  # a job ran but its result could not be reported, or the claim answer was bad
EXIT_USAGE = 2  # missing or invalid settings
EXIT_CLAIM_REFUSED = 3  # the claim token is unknown or spent (401): nothing was run
EXIT_UNREACHABLE = 4  # the control plane could not be reached before the idle deadline

HELP = """\
Outpost runner: claims one job from the control plane, runs the agent CLI in the workspace,
uploads the result bundle (patch.diff, transcript.txt, summary.json, manifest.json), reports
the outcome and exits. SIGTERM stops the agent and reports INTERRUPTED.

required environment:
  OUTPOST_CONTROL_PLANE_URL  base URL of the control plane's internal endpoints
  OUTPOST_CLAIM_TOKEN        one-time claim token (never passed to the agent)
  OUTPOST_AGENT              the agent this task serves (claude, codex, gemini, aider, grok, shell)
  OUTPOST_TASK_ID            this task's id (ECS task ARN, or the local runtime's id)
  OUTPOST_WORKSPACE          writable workspace directory

optional environment:
  OUTPOST_IDLE_TIMEOUT_S     give up waiting for a job after this long, exit 0 (default 600)
  OUTPOST_KILL_GRACE_S       SIGTERM-to-SIGKILL grace for the agent's processes (default 10)
  OUTPOST_STOP_BUDGET_S      after SIGTERM, report INTERRUPTED within this long (default 100)
  OUTPOST_AGENT_MODEL        the agent's default model (a job's model replaces it); passed to the agent
  OUTPOST_AGENT_BASE_URL     the provider's base URL; passed to the agent

exit codes: 0 job reported or no job before the idle deadline; 1 result not reported;
2 bad settings; 3 claim token refused (nothing run); 4 control plane unreachable.
"""


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class RunnerConfig:
    control_plane_url: str
    claim_token: str
    agent: str
    task_id: str
    workspace: Path
    idle_timeout_s: float = 600.0
    kill_grace_s: float = 10.0
    stop_budget_s: float = 100.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RunnerConfig:
        missing = [name for name in REQUIRED if not env.get(name)]
        if missing:
            raise ConfigError(f"missing environment variables: {', '.join(missing)}")
        url = env["OUTPOST_CONTROL_PLANE_URL"].rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigError("OUTPOST_CONTROL_PLANE_URL must be an http(s) URL")
        workspace = Path(env["OUTPOST_WORKSPACE"])
        if not workspace.is_dir():
            raise ConfigError(f"OUTPOST_WORKSPACE {workspace} is not a directory")
        return cls(
            control_plane_url=url,
            claim_token=env["OUTPOST_CLAIM_TOKEN"],
            agent=env["OUTPOST_AGENT"],
            task_id=env["OUTPOST_TASK_ID"],
            workspace=workspace.resolve(),
            idle_timeout_s=_seconds(env, "OUTPOST_IDLE_TIMEOUT_S", 600.0),
            kill_grace_s=_seconds(env, "OUTPOST_KILL_GRACE_S", 10.0),
            stop_budget_s=_seconds(env, "OUTPOST_STOP_BUDGET_S", 100.0),
        )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m agents.runner",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser.parse_args(argv)
