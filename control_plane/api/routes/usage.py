"""GET /usage: the caller's tokens and cost by day and agent, within a bounded date range."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from control_plane.api.deps import StoreDep, TenantDep
from control_plane.models import UsageReport, UsageRow, UsageTokens
from control_plane.problems import Problem
from control_plane.store.codec import now
from control_plane.store.usage import DayUsage, total

router = APIRouter(tags=["usage"])
MAX_DAYS = 92  # one quarter per request: the work grows with the range's dispatches
DEFAULT_DAYS = 30


def _row(usage: DayUsage) -> UsageRow:
    tokens = usage.tokens
    return UsageRow(
        day=date.fromisoformat(usage.day) if usage.day else None,
        agent=usage.agent or None,
        dispatches=usage.dispatches,
        tokens=UsageTokens(
            input=tokens["input_tokens"], cached=tokens["cached_input_tokens"], output=tokens["output_tokens"]
        ),
        cost_usd=usage.cost_usd,
        unpriced=usage.unpriced,
    )


@router.get("/usage", response_model=UsageReport)
def get_usage(
    tenant: TenantDep,
    stores: StoreDep,
    since: Annotated[
        date | None, Query(description=f"YYYY-MM-DD (UTC); default: {DEFAULT_DAYS} days before until")
    ] = None,
    until: Annotated[date | None, Query(description="YYYY-MM-DD (UTC), included; default: today")] = None,
) -> UsageReport:
    """Your dispatches' tokens and cost, summed by day and agent."""
    until = until or now().date()
    since = since or until - timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise Problem(422, "Invalid Request", "since must not be after until", field="since")
    if (until - since).days + 1 > MAX_DAYS:
        raise Problem(
            422,
            "Invalid Request",
            f"at most {MAX_DAYS} days per request; ask for several ranges",
            field="since",
        )
    days = stores.usage.daily(tenant_id=tenant.tenant_id, since=since, until=until)
    return UsageReport(since=since, until=until, days=[_row(d) for d in days], total=_row(total(days)))
