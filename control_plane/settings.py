"""Control-plane settings, read from the OUTPOST_* variables the CDK construct injects.

The names are the contract in docs/design.md. Outside local mode, unsafe defaults (a missing or
short admin key, an emulator endpoint) are refused at start-up rather than discovered later.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.agent_settings import AgentSettings, AgentSettingsError, parse_agent_settings
from agents.egress import check_patterns
from agents.endpoints import GATEWAY_ROUTES
from agents.registry import AGENTS

MIN_ADMIN_KEY_CHARS = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OUTPOST_", frozen=True, extra="ignore")

    env: Literal["local", "dev", "staging", "prod"] = "local"
    region: str = "us-east-1"
    aws_endpoint_url: str | None = None  # local mode only: the embedded emulator

    dispatches_table: str = "outpost-dispatches"
    tenants_table: str = "outpost-tenants"
    audit_table: str = "outpost-audit"
    artifacts_bucket: str = "outpost-artifacts"
    dispatch_queue_urls: dict[str, str] = Field(default_factory=dict)  # agent -> queue URL
    task_events_queue_url: str | None = None
    dead_letter_queue_url: str | None = None  # the dispatch queues' DLQ (engine/deadletters.py)

    admin_key: SecretStr | None = None
    runtime: Literal["ecs", "local"] = "local"
    cluster_arn: str | None = None
    task_definitions: dict[str, str] = Field(default_factory=dict)
    # agent -> ARN of its provider key's secret (ecs runtime): checked at dispatch to hold a
    # value (control_plane/runtime/provider_keys.py); local mode reads keys from its environment
    agent_secrets: dict[str, str] = Field(default_factory=dict)
    subnets: list[str] = Field(default_factory=list)
    # agent -> its own security group (ecs runtime): each agent's tasks reach only that agent's
    # egress proxy listener, so no agent's task may start in another agent's group
    agent_security_groups: dict[str, str] = Field(default_factory=dict)
    internal_url: str | None = None
    # Per agent: default and allowed models, provider base URL, extra variables (the fleet
    # stack writes the environment's settings from cdk.json; local mode reads them from here).
    agent_settings: dict[str, Any] = Field(default_factory=dict)
    # Local mode only (`outpost dev --allow-local-repos DIR`): file:// repositories under DIR.
    allow_local_repos: Path | None = None
    # The hosts agent tasks may reach (the environment's egress_allowlist, agents/egress.py
    # patterns), which a dispatch's repository must be on, with the agent's own additions from
    # the registry (control_plane/api/repos.py). None (local mode): no such check.
    egress_allowlist: list[str] | None = None
    # Publishing (POST /dispatch `publish`, docs/publishing.md): the GitHub or GitHub
    # Enterprise Server that hosts the repositories, and how a runner gets a token for one of
    # them: a GitHub App (a one-hour installation token limited to that repository), else a
    # fixed token (every repository it can reach, until someone revokes it).
    github_url: str = "https://github.com"
    github_api_url: str = "https://api.github.com"
    github_app_id: str | None = None
    github_app_private_key: SecretStr | None = None  # PEM
    github_token: SecretStr | None = None

    # The model gateway (docs/model-gateway.md): provider route -> API root it forwards to
    # (default: the provider's own; an agent's `base_url` setting goes first for that agent),
    # model calls one dispatch may have open at once (per replica), the largest request body.
    gateway_upstreams: dict[str, str] = Field(default_factory=dict)
    gateway_max_calls_per_dispatch: int = Field(default=8, ge=1, le=256)
    gateway_max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024 * 1024)

    # Service behaviour; defaults suit every environment, the variables exist for tuning.
    default_max_running: int = Field(default=10, ge=0)
    default_max_queued: int = Field(default=50, ge=0)
    quota_retry_after_s: int = Field(default=30, ge=1)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=24 * 3600)  # the API promises >= 24 h
    audit_ttl_days: int = Field(default=400, ge=1)
    fleet_cache_s: float = Field(default=30.0, ge=0)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    artifact_url_ttl_s: int = Field(default=300, ge=60, le=3600)

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        try:
            parse_agent_settings(self.agent_settings, agents=AGENTS, local=self.env == "local")
        except AgentSettingsError as error:
            raise ValueError(f"OUTPOST_AGENT_SETTINGS: {error}") from None
        for route, url in self.gateway_upstreams.items():
            if route not in GATEWAY_ROUTES.values():
                raise ValueError(
                    f"OUTPOST_GATEWAY_UPSTREAMS: unknown provider {route!r}; "
                    f"known: {', '.join(GATEWAY_ROUTES.values())}"
                )
            schemes = ("https://", "http://") if self.env == "local" else ("https://",)
            if not url.startswith(schemes):
                raise ValueError(f"OUTPOST_GATEWAY_UPSTREAMS: {route}: {' or '.join(schemes)} URLs only")
        if self.allow_local_repos is not None and (self.env != "local" or self.runtime != "local"):
            raise ValueError("OUTPOST_ALLOW_LOCAL_REPOS: file:// repositories are for local mode only")
        if bool(self.github_app_id) != bool(self.github_app_private_key):
            raise ValueError("OUTPOST_GITHUB_APP_ID and OUTPOST_GITHUB_APP_PRIVATE_KEY: both or neither")
        if self.env != "local" and not all(
            u.startswith("https://") for u in (self.github_url, self.github_api_url)
        ):
            raise ValueError("OUTPOST_GITHUB_URL and OUTPOST_GITHUB_API_URL: https:// outside local mode")
        if self.env == "local":
            if self.admin_key is None:
                # Local mode prints this key (`outpost dev`); it never leaves the machine.
                object.__setattr__(self, "admin_key", SecretStr("op_admin_" + secrets.token_urlsafe(32)))
            return self
        key = self.admin_key.get_secret_value() if self.admin_key else ""
        if len(key) < MIN_ADMIN_KEY_CHARS:
            raise ValueError(
                f"OUTPOST_ADMIN_KEY: at least {MIN_ADMIN_KEY_CHARS} characters outside local mode"
            )
        if self.aws_endpoint_url:
            raise ValueError("OUTPOST_AWS_ENDPOINT_URL: an emulator endpoint is for local mode only")
        if self.runtime == "ecs" and not (self.cluster_arn and self.task_definitions and self.subnets):
            raise ValueError(
                "OUTPOST_CLUSTER_ARN, OUTPOST_TASK_DEFINITIONS and OUTPOST_SUBNETS: needed by ecs"
            )
        return self

    @model_validator(mode="after")
    def _check_agent_security_groups(self) -> Settings:
        """Every agent the ecs runtime launches has its own group, named by a security group id:
        refused here at start-up, not at the first RunTask (which without a group would put the
        task in the VPC's default group)."""
        if self.runtime != "ecs":
            return self
        groups, agents = self.agent_security_groups, set(self.task_definitions)
        missing = sorted(agents - set(groups))
        if missing:
            raise ValueError(f"OUTPOST_AGENT_SECURITY_GROUPS: no security group for {', '.join(missing)}")
        unknown = sorted(set(groups) - agents)
        if unknown:
            raise ValueError(
                f"OUTPOST_AGENT_SECURITY_GROUPS: {', '.join(unknown)} not in OUTPOST_TASK_DEFINITIONS"
            )
        bad = sorted(agent for agent, group in groups.items() if not group.startswith("sg-"))
        if bad:
            raise ValueError(
                f"OUTPOST_AGENT_SECURITY_GROUPS: not a security group id (sg-...) for {', '.join(bad)}"
            )
        return self

    @model_validator(mode="after")
    def _check_egress_allowlist(self) -> Settings:
        try:
            check_patterns(self.egress_allowlist or ())
        except ValueError as error:
            raise ValueError(f"OUTPOST_EGRESS_ALLOWLIST: {error}") from None
        return self

    def settings_of(self, agent: str) -> AgentSettings:
        """The agent's model and endpoint settings (empty ones when none are configured)."""
        parsed = parse_agent_settings(self.agent_settings, agents=AGENTS, local=self.env == "local")
        return parsed.get(agent) or AgentSettings()

    def admin_key_value(self) -> str:
        assert self.admin_key is not None  # set by the validator in every mode
        return self.admin_key.get_secret_value()

    def cursor_key(self) -> bytes:
        """The key that signs pagination cursors, derived from the admin secret.

        Deriving it keeps one secret to manage; rotating the admin key only invalidates open cursors.
        """
        return hmac.new(self.admin_key_value().encode(), b"outpost/cursor/v1", hashlib.sha256).digest()
