"""What a dispatch's run used: tokens and cost, from the runner's summary to the dispatch record.

The record's ``cost`` holds ``input_tokens`` (every prompt token, cached ones included),
``cached_input_tokens``, ``output_tokens``, ``usd``, ``source`` and ``model``:
- ``source`` "gateway": the model gateway metered every call of the run and priced it with the
  dated table; these figures win over the runner's whenever the gateway saw a call
  (control_plane/store/dispatches.py ``gateway_cost``);
- ``source`` "agent": the CLI reported the cost (claude, aider);
- ``source`` "price-table": the CLI reported tokens but no cost, and the model the run used
  has a price in the dated table (agents/prices.toml);
- no ``usd``/``source``: neither is possible (no tokens, or a model without a price).
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.infra_prices import CAPACITIES, dispatch_infra_cost_usd
from agents.prices import table
from agents.registry import AGENTS
from control_plane.lifecycle import TERMINAL, Status
from control_plane.store.dispatches import DispatchRecord

CostSource = Literal["gateway", "agent", "price-table"]


class Usage(BaseModel):
    """A run's usage as the runner's summary reports it; strict: a bad number is refused."""

    model_config = ConfigDict(extra="forbid")
    usd: float | None = Field(default=None, ge=0, allow_inf_nan=False, strict=True)
    input_tokens: int | None = Field(default=None, ge=0, strict=True)
    output_tokens: int | None = Field(default=None, ge=0, strict=True)
    cached_input_tokens: int | None = Field(default=None, ge=0, strict=True)

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> Usage:
        """The summary's ``cost_usd`` and ``tokens``. Raises ValueError (pydantic's
        ValidationError) for a negative, non-finite or non-numeric value."""
        tokens = summary.get("tokens") or {}
        if not isinstance(tokens, dict):
            raise ValueError("summary.tokens must be an object or null")
        return cls(
            usd=summary.get("cost_usd"),
            input_tokens=tokens.get("input"),
            output_tokens=tokens.get("output"),
            cached_input_tokens=tokens.get("cached_input"),
        )


def model_used(record: DispatchRecord, summary: dict[str, Any], *, default: str | None) -> str | None:
    """The model the run used, as far as Outpost knows it: the one the runner reports
    (``summary.model``), else the one the dispatch asked for, else the agent's configured
    ``default``. None: the CLI's own default, which Outpost cannot price."""
    reported = summary.get("model")
    if isinstance(reported, str) and reported:
        return reported
    return record.model or default


def record_cost(summary: dict[str, Any], *, model: str | None) -> dict[str, Any] | None:
    """The dispatch record's ``cost`` for a run's summary; None when it reports nothing."""
    usage = Usage.from_summary(summary)
    cost: dict[str, Any] = usage.model_dump(exclude_none=True)
    if not cost:
        return None
    if usage.usd is not None:
        cost["source"] = "agent"
    else:
        price = table().price(model)
        if price is not None and usage.input_tokens is not None and usage.output_tokens is not None:
            cost["usd"] = price.cost_usd(
                input_tokens=usage.input_tokens,
                cached_input_tokens=usage.cached_input_tokens or 0,
                output_tokens=usage.output_tokens,
            )
            cost["source"] = "price-table"
    if model:
        cost["model"] = model
    return cost


def cost_source(cost: dict[str, Any] | None) -> CostSource | None:
    if not cost or cost.get("usd") is None:
        return None
    source = cost.get("source", "agent")  # records written before sources were kept: the agent's
    return source if source in ("gateway", "price-table") else "agent"


def infra_cost_usd(record: DispatchRecord) -> float | None:
    """The dispatch's infrastructure cost: its agent's Fargate task, at the capacity it was
    launched on, from the claim (the job's start on its task; a warm task's idle time before is
    the stage's cost, `make cost`) to the dispatch's end, at the region's list price
    (agents/infra_prices.py). None while it runs, for local runs, and where no price is kept."""
    if record.status not in TERMINAL or record.capacity not in CAPACITIES:
        return None
    started, ended = record.timestamps.get(str(Status.RUNNING)), record.timestamps.get(str(record.status))
    agent = AGENTS.get(record.agent)
    if not started or not ended or agent is None:
        return None
    seconds = (datetime.fromisoformat(ended) - datetime.fromisoformat(started)).total_seconds()
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    try:
        cost = dispatch_infra_cost_usd(agent, capacity=str(record.capacity), seconds=seconds, region=region)
    except (FileNotFoundError, KeyError, ValueError):  # no price table for the region, or no Spot price
        return None
    return round(cost, 6)
