"""AWS list prices per region (agents/aws_prices/<region>.toml) and a dispatch's infrastructure cost.

`make cost` (stacks/cost.py) prices whole stages with these tables; the control plane can price
one dispatch's Fargate task with `task_cost_usd`. Importable without aws-cdk-lib, like the
registry and the model price table (agents/prices.py).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from types import MappingProxyType

from agents.registry import Agent

TABLES = Path(__file__).with_name("aws_prices")
FREE_STORAGE_GIB = 20  # every Fargate task gets 20 GB of ephemeral storage without charge
MINIMUM_SECONDS = 60  # Fargate bills per second, at least one minute per task
CAPACITIES = ("FARGATE", "FARGATE_SPOT")


@dataclass(frozen=True)
class Price:
    usd: float
    unit: str
    source: str
    as_of: date
    from_memory: bool = False  # no stored copy of a page carried the figure


@dataclass(frozen=True)
class AwsPrices:
    region: str
    as_of: date
    prices: Mapping[str, Price]

    def __getitem__(self, name: str) -> float:
        return self.prices[name].usd

    def fargate_hourly(self, *, architecture: str, spot: bool) -> tuple[float, float]:
        """(per vCPU-hour, per GB-hour) for a Linux task. Fargate Spot runs X86_64 only."""
        if spot and architecture != "X86_64":
            raise ValueError(f"Fargate Spot does not run {architecture} tasks")
        kind = "spot_x86" if spot else ("arm" if architecture == "ARM64" else "x86")
        return self[f"fargate_{kind}_vcpu_hour"], self[f"fargate_{kind}_gb_hour"]

    def task_hourly(
        self, *, cpu: int, memory_mib: int, storage_gib: int, architecture: str, spot: bool
    ) -> float:
        """What one running task of this size costs an hour."""
        vcpu, gb = self.fargate_hourly(architecture=architecture, spot=spot)
        extra_storage = max(0, storage_gib - FREE_STORAGE_GIB)
        return cpu / 1024 * vcpu + memory_mib / 1024 * gb + extra_storage * self["fargate_storage_gb_hour"]


def parse(text: str) -> AwsPrices:
    """The table in ``text``; ValueError naming the entry that is wrong."""
    data = tomllib.loads(text)
    prices: dict[str, Price] = {}
    for name, entry in data.get("prices", {}).items():
        try:
            price = Price(
                usd=float(entry["usd"]),
                unit=str(entry["unit"]),
                source=str(entry["source"]),
                as_of=date.fromisoformat(str(entry["as_of"])),
                from_memory=bool(entry.get("from_memory", False)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"AWS price table: {name!r}: {error}") from None
        if price.usd < 0 or not price.source.strip() or not price.unit.strip():
            raise ValueError(f"AWS price table: {name!r}: negative price, or no unit or source")
        if price.from_memory != price.source.startswith(("from memory", "as in US East, from memory")):
            raise ValueError(f"AWS price table: {name!r}: a figure from memory says so in its source")
        prices[name] = price
    if not prices:
        raise ValueError("AWS price table: no prices")
    as_of = date.fromisoformat(str(data["as_of"]))
    if as_of != max(p.as_of for p in prices.values()):
        raise ValueError("AWS price table: `as_of` must be the newest entry's date")
    return AwsPrices(region=str(data["region"]), as_of=as_of, prices=MappingProxyType(prices))


def regions() -> tuple[str, ...]:
    return tuple(sorted(path.stem for path in TABLES.glob("*.toml")))


@cache
def prices_for(region: str) -> AwsPrices:
    path = TABLES / f"{region}.toml"
    if not path.is_file():
        raise ValueError(f"no AWS price table for {region!r}; tables: {', '.join(regions())}")
    table = parse(path.read_text())
    if table.region != region:
        raise ValueError(f"{path.name} says it is for {table.region!r}")
    return table


def task_cost_usd(
    *,
    cpu: int,
    memory_mib: int,
    storage_gib: int,
    architecture: str,
    capacity: str,
    seconds: float,
    region: str = "us-east-1",
) -> float:
    """A Fargate task's cost for ``seconds`` of billed time: its vCPU- and GB-seconds at the
    capacity it ran on (FARGATE or FARGATE_SPOT), plus its ephemeral storage above the free
    20 GB. Fargate bills per second with a one-minute minimum."""
    if capacity not in CAPACITIES:
        raise ValueError(f"capacity {capacity!r} is not one of {CAPACITIES}")
    hourly = prices_for(region).task_hourly(
        cpu=cpu,
        memory_mib=memory_mib,
        storage_gib=storage_gib,
        architecture=architecture,
        spot=capacity == "FARGATE_SPOT",
    )
    billed = max(MINIMUM_SECONDS, math.ceil(seconds)) if seconds > 0 else 0
    return round(hourly * billed / 3600, 6)


def dispatch_infra_cost_usd(
    agent: Agent, *, capacity: str, seconds: float, region: str = "us-east-1"
) -> float:
    """A dispatch's infrastructure cost: its agent's task size for the seconds its task served it."""
    return task_cost_usd(
        cpu=agent.cpu,
        memory_mib=agent.memory,
        storage_gib=agent.storage_gib,
        architecture=agent.architecture,
        capacity=capacity,
        seconds=seconds,
        region=region,
    )
