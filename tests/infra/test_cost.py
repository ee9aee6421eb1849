"""stacks/cost.py and `make cost` (stacks/cost_report.py): each stage priced from its templates."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from agents.infra_prices import prices_for
from agents.registry import AGENTS
from stacks.config import ConfigError, load_environments
from stacks.cost import SECONDS, Load, estimate, inventory
from stacks.cost_report import GOAL_IDLE_DEV, LEAN_DEV, context, main, read_templates

ENVS = ("dev", "staging", "prod")


def count(synth, env: str, type_: str) -> int:
    return sum(len(synth.resources(env, stack, type_)) for stack in synth.raw[env])


@pytest.mark.parametrize("env", ENVS)
def test_the_inventory_counts_what_the_templates_and_the_config_hold(synth, env):
    config = synth.stages[env].config
    inv = inventory(env, synth.raw[env])
    assert inv.nat_gateways == config.nat_gateways == count(synth, env, "AWS::EC2::NatGateway")
    assert inv.nat_instances == ()
    assert inv.interface_endpoints == (4 if config.interface_endpoints else 0)
    # each endpoint in as many zones as the stage has NAT gateways (constructs/network.py)
    assert inv.interface_endpoint_zones == config.nat_gateways * inv.interface_endpoints
    assert inv.load_balancers == 1 and inv.load_balancer_public_ips == 2  # internet-facing, two zones
    assert inv.elastic_ips == config.nat_gateways and inv.public_ipv4 == config.nat_gateways + 2
    assert (inv.web_acls, inv.waf_rules) == (1, 2)
    assert inv.kms_keys == count(synth, env, "AWS::KMS::Key")
    assert inv.secrets == count(synth, env, "AWS::SecretsManager::Secret")
    assert inv.metric_alarms == count(synth, env, "AWS::CloudWatch::Alarm") > 0
    assert inv.alarm_metrics > inv.metric_alarms  # alarms on metric math pay for each metric in them
    assert inv.dashboards == count(synth, env, "AWS::CloudWatch::Dashboard") == 3
    assert inv.container_insights == "enabled" and inv.trails == 1 and inv.trail_to_logs
    assert not inv.trail_data_events  # management events only: the first copy is free
    assert (inv.control_plane.cpu, inv.control_plane.memory_mib) == (
        config.control_plane_cpu,
        config.control_plane_memory,
    )
    assert (
        inv.control_plane.architecture == "ARM64"
        and inv.control_plane_count == config.control_plane_desired_count
    )
    assert set(inv.agents) == set(config.agents)
    for name, size in inv.agents.items():
        agent = AGENTS[name]
        assert (size.cpu, size.memory_mib, size.storage_gib, size.architecture) == (
            agent.cpu,
            agent.memory,
            agent.storage_gib,
            agent.architecture,
        )
    assert dict(inv.warm_pool) == {n: k for n in config.agents if (k := config.warm_pool_size(n))}
    assert inv.idle_timeout_s == 600  # the engine's default runner idle timeout


def test_the_warm_pool_pays_all_month_and_relaunches_every_idle_timeout(synth):
    inv = inventory("staging", synth.raw["staging"])
    prices = prices_for("us-east-1")
    result = estimate(inv, prices, Load(start_s=60))
    pool = next(i for i in result.items if i.name.startswith("warm pool"))
    hourly = sum(
        prices.task_hourly(**vars(inv.agents[n]), spot=AGENTS[n].spot) * k for n, k in inv.warm_pool.items()
    )
    assert pool.idle == round(hourly * 730, 2) > 0
    launches = inv.warm_tasks * SECONDS / (600 + 60)
    assert f"{launches:,.0f} launches" in pool.counted
    # every launch writes task records: more tasks relaunching, more DynamoDB writes
    fewer = dataclasses.replace(inv, warm_pool={"shell": 1})
    table = {e.name: e.idle for e in estimate(fewer, prices).items}
    assert table["DynamoDB (on demand)"] < {e.name: e.idle for e in result.items}["DynamoDB (on demand)"]


@pytest.mark.parametrize("env", ENVS)
def test_every_stage_has_an_idle_and_a_loaded_figure(synth, env):
    result = estimate(inventory(env, synth.raw[env]), prices_for("us-east-1"))
    assert 0 < result.idle < result.at_load
    assert result.idle == round(sum(i.idle for i in result.items), 2)
    jobs = next(i for i in result.items if i.name == "dispatch tasks (Fargate)")
    assert jobs.idle == 0 < jobs.load
    assert result.largest(1)[0].idle == max(i.idle for i in result.items)


def test_the_committed_dev_stage_is_over_the_goal_and_the_lean_profile_within_it(synth, lean):
    prices = prices_for("us-east-1")
    dev = estimate(inventory("dev", synth.raw["dev"]), prices)
    assert dev.idle > GOAL_IDLE_DEV  # a NAT gateway, WAF, Container Insights, dashboards, alarms
    lean_inv = inventory("dev", read_templates(lean))
    assert lean_inv.nat_gateways == 0 and lean_inv.nat_instances == ("t4g.nano",)
    assert lean_inv.public_ipv4 == 1 and lean_inv.load_balancer_public_ips == 0
    assert (lean_inv.web_acls, lean_inv.dashboards, lean_inv.metric_alarms) == (0, 0, 0)
    assert lean_inv.container_insights == "disabled" and dict(lean_inv.warm_pool) == {}
    for region in ("us-east-1", "eu-west-1"):
        assert estimate(lean_inv, prices_for(region)).idle <= GOAL_IDLE_DEV, region


def test_the_lean_profile_is_valid_dev_configuration():
    settings = context()["outpost:environments"]
    [dev] = load_environments({"dev": {**settings["dev"], **LEAN_DEV}}, selected="dev")
    assert (dev.nat, dev.warm_pool_size("shell"), dev.waf, dev.observability) == ("instance", 0, False, False)
    for field, value, problem in (
        ("nat", "gateways", "must be one of gateway, instance"),
        ("warm_pool", {"claude": -1}, "must be an integer from 0 to 50"),
        ("warm_pool", {"nobody": 1}, "names agents this environment does not deploy"),
    ):
        with pytest.raises(ConfigError, match=problem):
            load_environments({"dev": {**settings["dev"], field: value}}, selected="dev")


def test_make_cost_prints_every_stage_deterministically(synth, lean, tmp_path: Path, capsys):
    for stage in synth.stages.values():
        (tmp_path / f"assembly-{stage.stage_name}").symlink_to(synth.outdir / f"assembly-{stage.stage_name}")
    lean_dir = tmp_path / "lean-dev"
    lean_dir.mkdir()
    # the lean assembly the fixture made is fresh: main() reuses it instead of synthesizing
    (lean_dir / "assembly-Dev").symlink_to(lean)
    assert main(["--cdk-out", str(tmp_path)]) == 0
    first = capsys.readouterr().out
    assert main(["--cdk-out", str(tmp_path)]) == 0
    assert capsys.readouterr().out == first
    for name in ("dev", "dev-lean", "staging", "prod", "largest idle:", "idle eu-west-1", "goal:"):
        assert name in first
    assert "dev-lean $" in first and "within" in first
    assert main(["--cdk-out", str(tmp_path), "--env", "prod", "--markdown"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| stage | idle us-east-1 |") and table[2].startswith("| prod |")
