"""The dispatch engine's settings (OUTPOST_* variables, beside control_plane.settings.Settings).

Intervals are variables so that local mode and the end-to-end tests can run the same engine
with short periods; the defaults suit AWS.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.registry import AGENTS, ENVIRONMENTS
from agents.runner.timing import CLAIM_LONG_POLL_S, SQS_MAX_WAIT_S


class EngineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OUTPOST_", frozen=True, extra="ignore")

    env: str = "local"
    scale_interval_s: float = Field(default=2.0, gt=0)
    reconcile_interval_s: float = Field(default=15.0, gt=0)
    claim_long_poll_s: float = Field(default=CLAIM_LONG_POLL_S, ge=0, le=SQS_MAX_WAIT_S)
    timeout_grace_s: float = Field(default=60.0, ge=0)  # after a job's timeout, before TIMED_OUT
    launch_grace_s: float = Field(default=120.0, gt=0)  # a launched task must show up by then
    max_attempts: int = Field(default=3, ge=1, le=10)  # Spot interruptions requeue up to this
    max_pending_s: float = Field(default=6 * 3600.0, gt=0)  # a job nobody claims fails after this
    max_tasks_per_agent: int = Field(default=50, ge=1)
    max_launches_per_tick: int = Field(default=20, ge=1)
    idle_scale_down_s: float = Field(default=600.0, gt=0)  # idle tasks above the target stop after
    api_threads: int = Field(default=400, ge=40)  # request threads; each long-polling claim holds one
    engine_owner: str | None = None  # lease owner name; default: random per process
    lease_s: float = Field(default=15.0, gt=0)
    warm_pool: dict[str, int] = Field(default_factory=dict)  # agent -> size; overrides the registry
    engine_enabled: bool = True
    local_state_dir: Path | None = None
    local_stop_grace_s: float = Field(default=5.0, ge=0)  # local tasks: SIGTERM, then SIGKILL after this
    runner_idle_timeout_s: float = Field(default=600.0, gt=0)
    agent_container: str = "agent"  # the container name in the agent task definitions
    ecs_workspace: str = "/workspace"  # OUTPOST_WORKSPACE of ECS tasks (the workspace volume's mount)

    def warm_pool_sizes(self, deployed: Iterable[str]) -> dict[str, int]:
        """Per deployed agent, the warm-pool target for this environment (local mode uses the
        dev sizes). Only the agents the stage deploys: a task for any other has no task
        definition and would fail at every pass."""
        env = self.env if self.env in ENVIRONMENTS else "dev"
        agents = [name for name in deployed if name in AGENTS]
        sizes = {name: int(AGENTS[name].warm_pool.get(env, 0)) for name in agents}
        sizes.update({k: v for k, v in self.warm_pool.items() if k in sizes and v >= 0})
        return sizes
