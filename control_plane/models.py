"""API models, one per use: what a caller sends (…Create, …Update) and what it gets (…Public)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from agents.registry import AGENTS
from control_plane.lifecycle import Status
from control_plane.store.dispatches import DispatchRecord
from control_plane.store.tenants import TenantRecord
from control_plane.validation import UnsafeRepoError, check_git_ref, check_repo_url

MAX_TASK_CHARS = 32 * 1024
MAX_LABELS = 32
LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}$")
MAX_LABEL_VALUE_CHARS = 256


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RepoSpec(Strict):
    url: str = Field(max_length=2048, description="https://host/path (ssh forms are refused)")
    ref: str | None = Field(default=None, max_length=255, description="branch, tag or commit")

    @field_validator("url")
    @classmethod
    def _safe_url(cls, url: str) -> str:
        try:
            return check_repo_url(url)
        except UnsafeRepoError as error:
            raise ValueError(f"repository URL refused: {error}") from None

    @field_validator("ref")
    @classmethod
    def _safe_ref(cls, ref: str | None) -> str | None:
        return None if ref is None else check_git_ref(ref)


class DispatchCreate(Strict):
    agent: str = Field(max_length=64, description="an agent of the registry the tenant may use")
    task: str = Field(
        min_length=1, max_length=MAX_TASK_CHARS, description="the prompt; the command for shell"
    )
    repo: RepoSpec | None = None
    timeout_s: int | None = Field(default=None, ge=1, description="defaults to the agent's default timeout")
    labels: dict[str, Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE_CHARS)]] = Field(
        default_factory=dict, max_length=MAX_LABELS
    )

    @field_validator("agent")
    @classmethod
    def _known_agent(cls, agent: str) -> str:
        if agent not in AGENTS:
            raise ValueError(f"unknown agent; known: {', '.join(AGENTS)}")
        return agent

    @field_validator("labels")
    @classmethod
    def _label_keys(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            if not LABEL_KEY.match(key):
                raise ValueError(f"label key {key[:70]!r} must be 1-63 of A-Z a-z 0-9 _ . - /")
        return labels

    def resolved_timeout(self) -> int:
        """The timeout to record; raises ValueError if outside the agent's bounds."""
        agent = AGENTS[self.agent]
        if self.timeout_s is None:
            return agent.default_timeout_s
        if self.timeout_s > agent.max_timeout_s:
            raise ValueError(f"at most {agent.max_timeout_s} s for agent {agent.name}")
        return self.timeout_s


class RepoPublic(BaseModel):
    url: str
    ref: str | None


class Cost(BaseModel):
    """What a dispatch's agent used, as the runner's summary reports it (null: not reported)."""

    model_config = ConfigDict(extra="forbid")
    usd: float | None = Field(default=None, ge=0, allow_inf_nan=False, strict=True)
    input_tokens: int | None = Field(default=None, ge=0, strict=True)
    output_tokens: int | None = Field(default=None, ge=0, strict=True)
    cached_input_tokens: int | None = Field(default=None, ge=0, strict=True)

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> Cost | None:
        """The summary's ``cost_usd`` and ``tokens``; None when it reports neither. Raises
        ValueError (pydantic's ValidationError) for a negative, non-finite or non-numeric value."""
        tokens = summary.get("tokens") or {}
        if not isinstance(tokens, dict):
            raise ValueError("summary.tokens must be an object or null")
        cost = cls(
            usd=summary.get("cost_usd"),
            input_tokens=tokens.get("input"),
            output_tokens=tokens.get("output"),
            cached_input_tokens=tokens.get("cached_input"),
        )
        return cost if cost.model_dump(exclude_none=True) else None


class DispatchPublic(BaseModel):
    dispatch_id: str
    agent: str
    status: Status
    task: str
    repo: RepoPublic | None
    timeout_s: int
    labels: dict[str, str]
    created_at: datetime
    updated_at: datetime
    timestamps: dict[str, datetime] = Field(description="when the dispatch entered each status it passed")
    attempt: int
    version: int
    exit_code: int | None
    error: str | None
    artifacts: list[str]
    cost: Cost | None

    @classmethod
    def of(cls, record: DispatchRecord) -> DispatchPublic:
        return cls(
            dispatch_id=record.dispatch_id,
            agent=record.agent,
            status=record.status,
            task=record.task,
            repo=RepoPublic(url=record.repo_url, ref=record.repo_ref) if record.repo_url else None,
            timeout_s=record.timeout_s,
            labels=record.labels,
            created_at=record.created_at,  # type: ignore[arg-type]  # pydantic parses the ISO text
            updated_at=record.updated_at,  # type: ignore[arg-type]
            timestamps=record.timestamps,  # type: ignore[arg-type]
            attempt=record.attempt,
            version=record.version,
            exit_code=record.exit_code,
            error=record.error,
            artifacts=record.artifacts,
            cost=Cost.model_validate(record.cost) if record.cost else None,
        )


class DispatchPage(BaseModel):
    items: list[DispatchPublic]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at the end")


class LogPage(BaseModel):
    lines: list[str]
    next_chunk: int = Field(description="pass as `after` to read only newer lines")
    finished: bool = Field(description="the dispatch is in a final status: no more lines will come")


class ArtifactPublic(BaseModel):
    name: str
    size: int
    last_modified: datetime
    url: str = Field(description="a short-lived download URL")


class ArtifactList(BaseModel):
    items: list[ArtifactPublic]


AgentList = Annotated[list[str], Field(max_length=len(AGENTS))]


def _check_agents(agents: list[str] | None) -> list[str] | None:
    if agents is None:
        return None
    unknown = [a for a in agents if a not in AGENTS]
    if unknown:
        raise ValueError(f"unknown agents {unknown}; known: {', '.join(AGENTS)}")
    return sorted(set(agents))


class _TenantFields(Strict):
    allowed_agents: AgentList | None = Field(default=None, description="null: every agent")
    max_running: int | None = Field(default=None, ge=0, le=10_000, description="RUNNING dispatches at once")
    max_queued: int | None = Field(default=None, ge=0, le=100_000, description="PENDING dispatches at once")

    @field_validator("allowed_agents")
    @classmethod
    def _known_agents(cls, agents: list[str] | None) -> list[str] | None:
        return _check_agents(agents)


class TenantCreate(_TenantFields):
    name: str = Field(min_length=1, max_length=128)


class TenantUpdate(_TenantFields):
    """Only the fields present change; `allowed_agents: null` allows every agent."""

    name: str | None = Field(default=None, min_length=1, max_length=128)


class TenantPublic(BaseModel):
    tenant_id: str
    name: str
    api_key_prefix: str
    allowed_agents: list[str] | None
    max_running: int
    max_queued: int
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, record: TenantRecord) -> TenantPublic:
        return cls.model_validate(
            {k: getattr(record, k) for k in cls.model_fields}  # the key hash is not among them
        )


class TenantWithKey(TenantPublic):
    api_key: str = Field(description="shown once; only its hash is kept")


class TenantPage(BaseModel):
    items: list[TenantPublic]
    next_cursor: str | None
