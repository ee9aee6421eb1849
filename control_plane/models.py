"""API models, one per use: what a caller sends (…Create, …Update) and what it gets (…Public)."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from agents.agent_settings import MAX_MODELS, check_model_name
from agents.registry import AGENTS
from control_plane.lifecycle import Status
from control_plane.store.dispatches import DispatchRecord
from control_plane.store.tenants import TenantRecord
from control_plane.usage import CostSource, cost_source, infra_cost_usd
from control_plane.validation import check_git_ref

MAX_TASK_CHARS = 32 * 1024
MAX_LABELS = 32
LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}$")
MAX_LABEL_VALUE_CHARS = 256


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RepoSpec(Strict):
    url: str = Field(
        max_length=2048,
        description="https://host/path (ssh forms are refused); the route decides which are"
        " accepted (control_plane/api/repos.py): that depends on the control plane's settings",
    )
    ref: str | None = Field(default=None, max_length=255, description="branch, tag or commit")

    @field_validator("ref")
    @classmethod
    def _safe_ref(cls, ref: str | None) -> str | None:
        return None if ref is None else check_git_ref(ref)


MAX_TITLE_CHARS = 256
MAX_PR_BODY_CHARS = 16 * 1024


def _check_branch(branch: str) -> str:
    """A branch name git and GitHub accept (git check-ref-format's rules) that cannot pass for
    an option, a range or another kind of ref."""
    branch = check_git_ref(branch)
    if branch.startswith("refs/") or branch == "HEAD" or re.fullmatch(r"[0-9a-f]{40}", branch):
        raise ValueError("must be a plain branch name (not refs/..., HEAD or a commit id)")
    for part in branch.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            raise ValueError("no part of the name may start with '.' or end with '.lock'")
    return branch


class PullRequestSpec(Strict):
    title: str = Field(min_length=1, max_length=MAX_TITLE_CHARS, description="also the commit message")
    body: str = Field(default="", max_length=MAX_PR_BODY_CHARS)
    draft: bool = Field(default=False, strict=True)
    base: str | None = Field(
        default=None,
        max_length=255,
        description="the branch to merge into; default: repo.ref, else the repository's default branch",
    )

    @field_validator("title")
    @classmethod
    def _one_line(cls, title: str) -> str:
        if not title.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in title):
            raise ValueError("must be one line of visible text")
        return title

    @field_validator("base")
    @classmethod
    def _base_branch(cls, base: str | None) -> str | None:
        return None if base is None else _check_branch(base)


class PublishSpec(Strict):
    """Push the job's change to a branch of its repository; optionally open a pull request."""

    branch: str | None = Field(default=None, max_length=200, description="default: outpost/<dispatch id>")
    pull_request: PullRequestSpec | None = None

    @field_validator("branch")
    @classmethod
    def _branch(cls, branch: str | None) -> str | None:
        return None if branch is None else _check_branch(branch)


class DispatchCreate(Strict):
    agent: str = Field(max_length=64, description="an agent of the registry the tenant may use")
    task: str = Field(
        min_length=1, max_length=MAX_TASK_CHARS, description="the prompt; the command for shell"
    )
    repo: RepoSpec | None = None
    model: str | None = Field(
        default=None,
        max_length=128,
        description="a model the agent and the tenant allow; null: the agent's default model",
    )
    timeout_s: int | None = Field(default=None, ge=1, description="defaults to the agent's default timeout")
    publish: PublishSpec | None = Field(
        default=None, description="push the change to a branch (needs a repo on the configured GitHub)"
    )
    labels: dict[str, Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE_CHARS)]] = Field(
        default_factory=dict, max_length=MAX_LABELS
    )

    @field_validator("agent")
    @classmethod
    def _known_agent(cls, agent: str) -> str:
        if agent not in AGENTS:
            raise ValueError(f"unknown agent; known: {', '.join(AGENTS)}")
        return agent

    @field_validator("task")
    @classmethod
    def _task_says_something(cls, task: str) -> str:
        # kept as given (leading spaces can matter to a prompt), but blank is no task at all
        if not task.strip():
            raise ValueError("the task is blank")
        return task

    @field_validator("model")
    @classmethod
    def _model_name(cls, model: str | None) -> str | None:
        return None if model is None else check_model_name(model)

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


class Tokens(BaseModel):
    """A run's token counts: as the model gateway metered them when its calls went through
    the gateway, else as its agent's CLI reported them (null: not reported)."""

    input: int | None = Field(description="every prompt token, cached ones included")
    cached: int | None = Field(description="prompt tokens served from the provider's cache")
    output: int | None

    @classmethod
    def of(cls, cost: dict[str, Any] | None) -> Tokens | None:
        if not cost or all(
            cost.get(k) is None for k in ("input_tokens", "cached_input_tokens", "output_tokens")
        ):
            return None
        return cls(
            input=cost.get("input_tokens"),
            cached=cost.get("cached_input_tokens"),
            output=cost.get("output_tokens"),
        )


class PublishResult(BaseModel):
    branch: str
    commit: str | None
    pull_request_url: str | None
    error: str | None = Field(description="why the push or the pull request failed; null: it worked")


class PublishPublic(BaseModel):
    branch: str
    pull_request: PullRequestSpec | None
    result: PublishResult | None = Field(description="what the runner did; null until the job ended")

    @classmethod
    def of(cls, record: DispatchRecord) -> PublishPublic | None:
        if not record.publish:
            return None
        reported = (record.summary or {}).get("publish")
        try:
            result = PublishResult.model_validate(reported) if reported else None
        except ValueError:
            result = None  # a summary from another runner version: the record still shows
        return cls(
            branch=record.publish["branch"], pull_request=record.publish.get("pull_request"), result=result
        )


class DispatchPublic(BaseModel):
    dispatch_id: str
    agent: str
    status: Status
    task: str
    repo: RepoPublic | None
    model: str | None = Field(description="the model the dispatch asked for; null: the agent's default")
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
    tokens: Tokens | None
    cost_usd: float | None
    cost_source: CostSource | None = Field(
        description="gateway: the model gateway metered every call and priced it with"
        " agents/prices.toml; agent: the CLI reported it; price-table: computed from"
        " agents/prices.toml by model and tokens; null: none was possible"
    )
    infra_cost_usd: float | None = Field(
        description="what its Fargate task cost while it ran the job (vCPU, memory and storage above"
        " the free 20 GB, at the Spot or on-demand list price of the region, agents/aws_prices),"
        " next to cost_usd, the model's; null until it ends, and outside AWS"
    )
    publish: PublishPublic | None

    @classmethod
    def of(cls, record: DispatchRecord) -> DispatchPublic:
        return cls(
            dispatch_id=record.dispatch_id,
            agent=record.agent,
            model=record.model,
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
            tokens=Tokens.of(record.cost),
            cost_usd=record.cost.get("usd") if record.cost else None,
            cost_source=cost_source(record.cost),
            infra_cost_usd=infra_cost_usd(record),
            publish=PublishPublic.of(record),
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
ModelList = Annotated[list[Annotated[str, StringConstraints(max_length=128)]], Field(max_length=MAX_MODELS)]


def _check_agents(agents: list[str] | None) -> list[str] | None:
    if agents is None:
        return None
    unknown = [a for a in agents if a not in AGENTS]
    if unknown:
        raise ValueError(f"unknown agents {unknown}; known: {', '.join(AGENTS)}")
    return sorted(set(agents))


class _TenantFields(Strict):
    allowed_agents: AgentList | None = Field(default=None, description="null: every agent")
    allowed_models: ModelList | None = Field(
        default=None, description="models its dispatches may ask for; null: whatever each agent allows"
    )
    max_running: int | None = Field(default=None, ge=0, le=10_000, description="RUNNING dispatches at once")
    max_queued: int | None = Field(default=None, ge=0, le=100_000, description="PENDING dispatches at once")
    budget_daily_usd: float | None = Field(
        default=None, ge=0, le=1_000_000, description="model spend per UTC day, in US dollars; null: no limit"
    )
    budget_monthly_usd: float | None = Field(
        default=None,
        ge=0,
        le=10_000_000,
        description="model spend per UTC month, in US dollars; null: no limit",
    )
    budget_dispatch_usd: float | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="model spend of one dispatch, in US dollars; null: no limit",
    )

    @field_validator("allowed_models")
    @classmethod
    def _model_names(cls, models: list[str] | None) -> list[str] | None:
        return None if models is None else sorted({check_model_name(m) for m in models})

    @field_validator("allowed_agents")
    @classmethod
    def _known_agents(cls, agents: list[str] | None) -> list[str] | None:
        return _check_agents(agents)

    @field_validator("budget_daily_usd", "budget_monthly_usd", "budget_dispatch_usd")
    @classmethod
    def _whole_microdollars(cls, usd: float | None) -> float | None:
        # Costs are kept to the micro-dollar; finer budgets would mean nothing, and below 1e-130
        # DynamoDB cannot store the number at all
        return None if usd is None else round(usd, 6)


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
    allowed_models: list[str] | None
    max_running: int
    max_queued: int
    budget_daily_usd: float | None
    budget_monthly_usd: float | None
    budget_dispatch_usd: float | None
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


class UsageTokens(BaseModel):
    input: int
    cached: int
    output: int


class UsageRow(BaseModel):
    day: date | None = Field(description="UTC day the dispatches were created; null in `total`")
    agent: str | None = Field(description="null in `total`")
    dispatches: int = Field(description="dispatches that reported tokens or cost")
    tokens: UsageTokens
    cost_usd: float = Field(description="the sum of the dispatches' cost_usd")
    unpriced: int = Field(description="dispatches with tokens but no cost (model without a price)")


class UsageReport(BaseModel):
    since: date
    until: date
    days: list[UsageRow] = Field(description="one row per day and agent with usage, oldest first")
    total: UsageRow
