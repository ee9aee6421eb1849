"""A tenant's usage (tokens and cost) summed by day and agent, read from its dispatch records.

Reads only the tenant's own partition of the ``by-tenant`` index, between two creation dates
(the index's sort key), so the work grows with the tenant's dispatches in the range and never
touches another tenant's. A dispatch counts on the UTC day it was created.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from control_plane.store.codec import decode_item, encode
from control_plane.store.dispatches import GATEWAY_ATTRIBUTES, gateway_cost

USAGE_FIELDS = ("input_tokens", "cached_input_tokens", "output_tokens")


@dataclass
class DayUsage:
    day: str  # YYYY-MM-DD (UTC)
    agent: str
    dispatches: int = 0  # dispatches that reported any usage
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(USAGE_FIELDS, 0))
    cost_usd: float = 0.0
    unpriced: int = 0  # dispatches with tokens but no cost (a model without a price)

    def add(self, cost: dict[str, Any]) -> None:
        self.dispatches += 1
        for name in USAGE_FIELDS:
            self.tokens[name] += int(cost.get(name) or 0)
        if cost.get("usd") is None:
            self.unpriced += 1
        else:
            self.cost_usd += float(cost["usd"])


class UsageStore:
    def __init__(self, *, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def daily(self, *, tenant_id: str, since: date, until: date) -> list[DayUsage]:
        """Usage of the tenant's dispatches created from ``since`` to ``until`` (both included),
        by (day, agent), in that order."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "by-tenant",
            "KeyConditionExpression": "tenant_id = :t AND created_at BETWEEN :from AND :to",
            "FilterExpression": "attribute_exists(#cost) OR attribute_exists(gw_calls)",
            "ProjectionExpression": ", ".join(("#agent", "created_at", "#cost", *GATEWAY_ATTRIBUTES)),
            "ExpressionAttributeNames": {"#agent": "agent", "#cost": "cost"},
            "ExpressionAttributeValues": {
                ":t": encode(tenant_id),
                ":from": encode(since.isoformat()),
                # the last instant of `until`: created_at is "YYYY-MM-DDTHH:MM:SS.ffffffZ"
                ":to": encode((until + timedelta(days=1)).isoformat()),
            },
        }
        sums: dict[tuple[str, str], DayUsage] = {}
        while True:
            reply = self._client.query(**kwargs)
            for raw in reply.get("Items", []):
                item = decode_item(raw)
                cost = gateway_cost(item) or item.get("cost")  # as the dispatch shows it
                if not isinstance(cost, dict):
                    continue  # null: the run reported nothing
                key = (str(item["created_at"])[:10], str(item["agent"]))
                sums.setdefault(key, DayUsage(day=key[0], agent=key[1])).add(cost)
            if "LastEvaluatedKey" not in reply:
                break
            kwargs["ExclusiveStartKey"] = reply["LastEvaluatedKey"]
        for usage in sums.values():
            usage.cost_usd = round(usage.cost_usd, 6)
        return [sums[key] for key in sorted(sums)]


def total(days: list[DayUsage]) -> DayUsage:
    """All rows summed (its ``day`` and ``agent`` are empty)."""
    merged = DayUsage(day="", agent="")
    for usage in days:
        merged.dispatches += usage.dispatches
        merged.unpriced += usage.unpriced
        merged.cost_usd += usage.cost_usd
        for name, count in usage.tokens.items():
            merged.tokens[name] += count
    merged.cost_usd = round(merged.cost_usd, 6)
    return merged
