"""agents/aws_prices/*.toml and agents/infra_prices.py: the dated AWS tables and a task's cost."""

from __future__ import annotations

from datetime import date

import pytest

from agents.infra_prices import TABLES, dispatch_infra_cost_usd, parse, prices_for, regions, task_cost_usd
from agents.registry import AGENTS


def test_there_is_a_table_for_us_east_1_and_one_in_europe_with_the_same_entries() -> None:
    assert "us-east-1" in regions() and any(r.startswith("eu-") for r in regions())
    names = {region: set(prices_for(region).prices) for region in regions()}
    assert len({frozenset(n) for n in names.values()}) == 1, "every region prices the same things"


@pytest.mark.parametrize("region", regions())
def test_every_price_has_a_unit_a_source_and_a_date(region: str) -> None:
    table = prices_for(region)
    assert table.region == region and table.as_of <= date.today()
    assert table.as_of == max(p.as_of for p in table.prices.values())
    for name, price in table.prices.items():
        assert price.usd >= 0 and price.unit and price.source, name
        assert price.from_memory == price.source.startswith(("from memory", "as in US East, from memory")), (
            name
        )


def test_a_price_from_memory_must_say_so() -> None:
    text = (TABLES / "us-east-1.toml").read_text()
    broken = text.replace(
        'source = "from memory: https://aws.amazon.com/ecr/pricing/"', 'source = "https://x"', 1
    )
    with pytest.raises(ValueError, match="ecr_storage_gb_month"):
        parse(broken)
    with pytest.raises(ValueError, match="nat_gateway_hour"):
        parse(text.replace('usd = 0.045\nunit = "NAT gateway-hour"', 'unit = "NAT gateway-hour"', 1))


def test_a_ten_minute_1_vcpu_2_gb_job_costs_under_a_cent_on_demand_and_on_spot() -> None:
    size = {"cpu": 1024, "memory_mib": 2048, "storage_gib": 30, "architecture": "X86_64", "seconds": 600}
    on_demand = task_cost_usd(capacity="FARGATE", **size)
    spot = task_cost_usd(capacity="FARGATE_SPOT", **size)
    # (1 x 0.04048 + 2 x 0.004445 + 10 GB above the free 20 x 0.000111) / 6
    assert on_demand == round((0.04048 + 2 * 0.004445 + 10 * 0.000111) / 6, 6) == 0.008413
    assert spot == round((0.01214 + 2 * 0.00133 + 10 * 0.000111) / 6, 6) == 0.002652
    assert max(on_demand, spot) <= 0.01
    assert dispatch_infra_cost_usd(AGENTS["claude"], capacity="FARGATE", seconds=600) == on_demand


def test_fargate_bills_a_minute_at_least_and_storage_above_20_gb_only() -> None:
    size = {"cpu": 1024, "memory_mib": 2048, "architecture": "X86_64", "capacity": "FARGATE"}
    assert task_cost_usd(storage_gib=20, seconds=5, **size) == task_cost_usd(
        storage_gib=20, seconds=60, **size
    )
    assert task_cost_usd(storage_gib=20, seconds=0, **size) == 0
    assert task_cost_usd(storage_gib=20, seconds=3600, **size) == round(0.04048 + 2 * 0.004445, 6)
    assert task_cost_usd(storage_gib=21, seconds=3600, **size) == round(0.04048 + 2 * 0.004445 + 0.000111, 6)


def test_arm_is_priced_as_arm_and_never_on_spot() -> None:
    arm = {"cpu": 512, "memory_mib": 1024, "storage_gib": 20, "architecture": "ARM64", "seconds": 3600}
    assert task_cost_usd(capacity="FARGATE", **arm) == round(0.5 * 0.03238 + 0.00356, 6)
    with pytest.raises(ValueError, match="Spot"):
        task_cost_usd(capacity="FARGATE_SPOT", **arm)
    with pytest.raises(ValueError, match="capacity"):
        task_cost_usd(capacity="EC2", **arm)


def test_the_region_changes_the_price() -> None:
    job = {"cpu": 1024, "memory_mib": 2048, "storage_gib": 30, "architecture": "X86_64", "seconds": 600}
    assert task_cost_usd(capacity="FARGATE_SPOT", region="eu-west-1", **job) != task_cost_usd(
        capacity="FARGATE_SPOT", **job
    )
    with pytest.raises(ValueError, match="no AWS price table"):
        prices_for("ap-south-9")
