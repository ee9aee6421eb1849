"""Observability stack: three dashboards, every alarm notifying the topic, thresholds from config,
dimensions as the services publish them, Outpost metrics as control_plane/metrics.py defines them."""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_efs as efs
from aws_cdk.assertions import Match, Template

from agents.registry import AGENTS
from constructs.alarm_topic import AlarmTopic, MissingAlarmEmail
from constructs.secure_bucket import REQUEST_METRICS_ID
from control_plane.metrics import CATALOGUE, NAMESPACE
from stacks.config import AlarmThresholds, ConfigError, load_environments
from stacks.observability import DASHBOARDS, is_bursting

ENVS = ["dev", "staging", "prod"]
ROOT = Path(__file__).resolve().parents[2]
ALARM = "AWS::CloudWatch::Alarm"
COMPOSITE = "AWS::CloudWatch::CompositeAlarm"
RULE_LIMIT = 10240  # CloudWatch's limit on a composite alarm's rule
MATH_ALARM_METRICS = 10  # CloudWatch's limit on the metrics one metric math alarm reads


def alarms(synth, env) -> dict[str, dict[str, Any]]:
    """alarm name -> properties, for the stage's metric alarms."""
    return {
        r["Properties"]["AlarmName"]: r["Properties"]
        for r in synth.resources(env, "Observability", ALARM).values()
    }


def one(synth, env, suffix) -> dict[str, Any]:
    (found,) = [p for name, p in alarms(synth, env).items() if name.endswith(suffix)]
    return found


def metric_stats(props) -> list[dict[str, Any]]:
    """Every metric an alarm reads: (namespace, name, dimensions) of a plain or a math alarm."""
    if "MetricName" in props:
        return [
            {
                "Namespace": props["Namespace"],
                "MetricName": props["MetricName"],
                "Dimensions": props.get("Dimensions", []),
            }
        ]
    return [q["MetricStat"]["Metric"] for q in props["Metrics"] if "MetricStat" in q]


def resolved(value) -> str:
    """A template value as text, each intrinsic function replaced by a placeholder."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(resolved(part) for part in parts)
    return "TOKEN"


def dashboard_bodies(synth, env) -> dict[str, dict[str, Any]]:
    return {
        r["Properties"]["DashboardName"]: json.loads(resolved(r["Properties"]["DashboardBody"]))
        for r in synth.resources(env, "Observability", "AWS::CloudWatch::Dashboard").values()
    }


def expected_alarm_count(synth, env) -> int:
    """The alarm set of docs/runbook.md, counted from what the stage deploys."""
    stage = synth.stages[env]
    config = stage.config
    agents = len(config.agents)
    pools = sum(1 for a in config.agents if AGENTS[a].warm_pool.get(env, 0) > 0)
    per_agent = 8  # cpu, memory, task/launch/claim failures, dead-lettered, reconciler, queue wait
    queues = agents + 1  # one per agent, and the task-events queue: depth and age each
    control_plane = 4 + 3  # unhealthy, below minimum, cpu, memory; target 5xx, lb 5xx, latency
    nat = 2 * config.nat_gateways
    efs_alarms = 2 if is_bursting(stage.data.workspaces.file_system) else 0
    tables = 2 * len(stage.data.tables)  # read and write throttles
    proxy = 1 if config.egress_proxy and config.container_insights else 0  # its running tasks
    return (
        agents * per_agent
        + 2 * pools
        + 2 * queues
        + 1
        + control_plane
        + nat
        + efs_alarms
        + 2
        + 1
        + tables
        + proxy
    )


@pytest.mark.parametrize("env", ENVS)
def test_three_dashboards_with_the_widgets_of_spec_section_4(synth, env):
    stage_name = env.capitalize()
    bodies = dashboard_bodies(synth, env)
    assert set(bodies) == {f"Outpost-{stage_name}-{name}" for name in DASHBOARDS}

    def titles(name):
        widgets = bodies[f"Outpost-{stage_name}-{name}"]["widgets"]
        return [w["properties"].get("title") or w["properties"].get("markdown", "") for w in widgets]

    fleet, agents, infrastructure = (" | ".join(titles(n)) for n in DASHBOARDS)
    for expected in (
        "Running tasks by agent",
        "Idle tasks by agent",
        "Agent CPU",
        "Agent memory",
        "Task failures by agent",
        "Launch failures by agent",
        "Cluster CPU and memory",
        "Cluster network",
        "Queue Dispatch-claude",
        "Dead-letter queue",
        "Control plane",
    ):
        assert expected in fleet, expected
    for expected in (
        "Success rate by agent",
        "Concurrency",
        "Throughput",
        "Warm-pool hits",
        "Cold starts",
        "Dispatch to RUNNING, p90",
        "claude: duration of completed dispatches",
        "claude: errors by type",
    ):
        assert expected in agents, expected
    for expected in (
        "NAT gateway 1",
        "EFS throughput",
        "EFS storage",
        "S3 artifacts: errors",
        "WAF requests",
        "Table",
    ):
        assert expected in infrastructure, expected
    # the 95 % target line on the success-rate graph
    (success,) = [
        w for w in bodies[f"Outpost-{stage_name}-Agents"]["widgets"]
        if w["properties"].get("title", "").startswith("Success rate")
    ]  # fmt: skip
    assert {"value": 95, "label": "target"}.items() <= success["properties"]["annotations"]["horizontal"][
        0
    ].items()


@pytest.mark.parametrize("env", ENVS)
def test_every_alarm_and_composite_notifies_the_encrypted_topic(synth, env):
    ((topic_id, topic),) = synth.resources(env, "Observability", "AWS::SNS::Topic").items()
    assert "KmsMasterKeyId" in topic["Properties"]
    everything = {
        **synth.resources(env, "Observability", ALARM),
        **synth.resources(env, "Observability", COMPOSITE),
    }
    assert everything
    for logical_id, alarm in everything.items():
        assert alarm["Properties"]["ActionsEnabled"] is True, logical_id
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}], logical_id


@pytest.mark.parametrize("env", ENVS)
def test_alarm_count_per_stage(synth, env):
    assert len(alarms(synth, env)) == expected_alarm_count(synth, env)
    assert len(synth.resources(env, "Observability", COMPOSITE)) == 2


@pytest.mark.parametrize("env", ENVS)
def test_per_agent_alarms_and_warm_pool_alarms_only_where_a_pool_is_configured(synth, env):
    names = set(alarms(synth, env))
    for agent in synth.stages[env].config.agents:
        for what in ("Cpu", "Memory", "TaskFailures", "LaunchFailures", "ClaimFailures", "DeadLettered",
                     "ReconcilerFailures", "QueueWaitP90"):  # fmt: skip
            assert any(f"-Agent-{agent}-{what}-" in n for n in names), (agent, what)
        pooled = AGENTS[agent].warm_pool.get(env, 0) > 0
        for what in ("WarmPoolBelowSize", "WarmPoolHitRate"):
            assert any(f"-Agent-{agent}-{what}-" in n for n in names) == pooled, (agent, what)


def test_warm_pools_differ_by_stage_so_the_pool_alarms_do_too(synth):
    # dev pools only the shell agent; staging and prod pool every agent (agents/registry.py)
    pooled = {env: {n for n in alarms(synth, env) if "WarmPoolBelowSize" in n} for env in ENVS}
    assert len(pooled["dev"]) == 1 < len(pooled["staging"]) == len(pooled["prod"]) == len(AGENTS)


@pytest.mark.parametrize("env", ENVS)
def test_every_alarm_rolls_up_into_exactly_one_composite_that_fits_cloudwatch_limits(synth, env):
    logical_ids = set(synth.resources(env, "Observability", ALARM))
    rules = {
        r["Properties"]["AlarmName"]: r["Properties"]["AlarmRule"]
        for r in synth.resources(env, "Observability", COMPOSITE).values()
    }
    assert set(rules) == {
        f"Outpost-{env.capitalize()}-Composite-{tag}" for tag in ("fleet-health", "resource-exhaustion")
    }
    members = {
        name: [p["Fn::GetAtt"][0] for p in rule["Fn::Join"][1] if isinstance(p, dict)]
        for name, rule in rules.items()
    }
    everyone = [m for ms in members.values() for m in ms]
    assert sorted(everyone) == sorted(logical_ids)
    names = {
        lid: r["Properties"]["AlarmName"] for lid, r in synth.resources(env, "Observability", ALARM).items()
    }
    arn = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:"
    for name, rule in rules.items():
        text = "".join(
            p if isinstance(p, str) else arn + names[p["Fn::GetAtt"][0]] for p in rule["Fn::Join"][1]
        )
        assert len(text) <= RULE_LIMIT, (name, len(text))


@pytest.mark.parametrize("env", ENVS)
def test_every_metric_math_alarm_reads_at_most_ten_metrics(synth, env):
    # CloudWatch: a metric math alarm's expression may use at most 10 metrics
    # (CloudWatch service quotas: "metric math alarms: up to 10 metrics per alarm").
    for name, props in alarms(synth, env).items():
        queries = props.get("Metrics") or []
        assert len([q for q in queries if "MetricStat" in q]) <= MATH_ALARM_METRICS, name


@pytest.mark.parametrize("env", ENVS)
def test_thresholds_come_from_the_stage_config(synth, env):
    t = synth.stages[env].config.alarms
    assert (
        one(synth, env, "-Queue-Dispatch-claude-Queue-Message-Count-Max-Critical")["Threshold"]
        == t.queue_depth
    )
    assert (
        one(synth, env, "-Queue-Dispatch-claude-Queue-Message-Age-Max-Critical")["Threshold"] == t.queue_age_s
    )
    assert one(synth, env, "-Agent-claude-Cpu-Critical")["Threshold"] == t.agent_cpu_percent
    assert one(synth, env, "-Agent-claude-Memory-Critical")["Threshold"] == t.agent_memory_percent
    assert one(synth, env, "-Agent-claude-TaskFailures-Critical")["Threshold"] == t.task_failures
    assert one(synth, env, "-Agent-claude-QueueWaitP90-Critical")["Threshold"] == t.queue_wait_p90_s
    assert one(synth, env, "-Api-Target5xx-Critical")["Threshold"] == t.api_5xx
    assert one(synth, env, "-Api-LatencyP90-Critical")["Threshold"] == t.api_latency_p90_ms / 1000
    assert one(synth, env, "-Infra-S3-artifacts-4xx-Critical")["Threshold"] == t.s3_4xx
    assert one(synth, env, "-Infra-Waf-Blocked-Critical")["Threshold"] == t.waf_blocked
    if AGENTS["shell"].warm_pool.get(env, 0):
        assert (
            one(synth, env, "-Agent-shell-WarmPoolHitRate-Critical")["Threshold"]
            == t.warm_pool_hit_rate_percent
        )


def test_a_threshold_set_in_cdk_json_changes_that_stage_only(synth):
    # prod sets its own (cdk.json); dev keeps the defaults: the relation, not just the value
    defaults = AlarmThresholds()
    prod = synth.stages["prod"].config.alarms
    assert synth.stages["dev"].config.alarms == defaults
    assert prod.queue_wait_p90_s != defaults.queue_wait_p90_s
    assert one(synth, "prod", "-Agent-claude-QueueWaitP90-Critical")["Threshold"] == prod.queue_wait_p90_s
    assert one(synth, "dev", "-Agent-claude-QueueWaitP90-Critical")["Threshold"] == defaults.queue_wait_p90_s


def test_the_documented_alarm_conditions_hold_with_the_real_defaults(synth):
    """SPEC §4: CPU > 80 % and memory > 85 % for 5 min, task failures > 3 in 5 min, queue depth
    > 100 for 5 min, oldest message > 300 s, warm pool short for 10 min, DLQ not empty."""
    cpu = one(synth, "dev", "-Agent-claude-Cpu-Critical")
    assert (cpu["Threshold"], cpu["EvaluationPeriods"], cpu["DatapointsToAlarm"]) == (80, 5, 5)
    assert {q["MetricStat"]["Period"] for q in cpu["Metrics"] if "MetricStat" in q} == {60}
    assert one(synth, "dev", "-Agent-claude-Memory-Critical")["Threshold"] == 85
    failures = one(synth, "dev", "-Agent-claude-TaskFailures-Critical")
    assert (failures["Threshold"], failures["Metrics"][0]["MetricStat"]["Period"]) == (3, 300)
    depth = one(synth, "dev", "-Queue-Dispatch-claude-Queue-Message-Count-Max-Critical")
    assert (depth["Threshold"], depth["EvaluationPeriods"], depth["Metrics"][0]["MetricStat"]["Period"]) == (
        100,
        5,
        60,
    )
    assert one(synth, "dev", "-Queue-Dispatch-claude-Queue-Message-Age-Max-Critical")["Threshold"] == 300
    pool = one(synth, "dev", "-Agent-shell-WarmPoolBelowSize-Critical")
    assert (pool["EvaluationPeriods"], pool["DatapointsToAlarm"], pool["TreatMissingData"]) == (
        10,
        10,
        "breaching",
    )
    dlq = one(synth, "dev", "-DeadLetterQueue-Queue-Message-Count-Max-Critical")
    assert (dlq["Threshold"], dlq["ComparisonOperator"]) == (0, "GreaterThanThreshold")


@pytest.mark.parametrize("env", ENVS)
def test_outpost_metrics_are_read_with_the_names_and_dimensions_the_control_plane_emits(synth, env):
    read = [
        m for props in alarms(synth, env).values() for m in metric_stats(props) if m["Namespace"] == NAMESPACE
    ]
    for body in dashboard_bodies(synth, env).values():
        for widget in body["widgets"]:
            for line in widget["properties"].get("metrics", []):
                names = [x for x in line if isinstance(x, str)]
                if names and names[0] == NAMESPACE:
                    dims = names[2:]
                    read.append({"Namespace": NAMESPACE, "MetricName": names[1],
                                 "Dimensions": [{"Name": k} for k in dims[0::2]]})  # fmt: skip
    assert read
    for metric in read:
        assert metric["MetricName"] in CATALOGUE, metric
        assert {d["Name"] for d in metric["Dimensions"]} == set(CATALOGUE[metric["MetricName"]].dimensions), (
            metric
        )


@pytest.mark.parametrize("env", ENVS)
def test_aws_dimensions_are_the_ones_the_services_publish(synth, env):
    stage = synth.stages[env]
    every = [m for props in alarms(synth, env).values() for m in metric_stats(props)]
    # one NatGatewayId per NAT gateway of the VPC, imported from the network stack
    nats = {
        json.dumps(d["Value"]) for m in every if m["Namespace"] == "AWS/NATGateway" for d in m["Dimensions"]
    }
    assert (
        len(nats) == stage.config.nat_gateways == len(synth.resources(env, "Network", "AWS::EC2::NatGateway"))
    )
    # Container Insights for standalone tasks: ClusterName + TaskDefinitionFamily of each agent;
    # for the egress proxy's service: ClusterName + ServiceName
    insights = [m for m in every if m["Namespace"] == "ECS/ContainerInsights"]
    assert {m["Dimensions"][0]["Name"] for m in insights} == {"ClusterName"}
    families = {
        m["Dimensions"][1]["Value"] for m in insights if m["Dimensions"][1]["Name"] == "TaskDefinitionFamily"
    }
    assert families == {task.task_definition.family for task in stage.fleet.agents.values()}
    (service,) = [m for m in insights if m["Dimensions"][1]["Name"] == "ServiceName"]
    assert service["MetricName"] == "RunningTaskCount"
    assert "EgressProxyService" in json.dumps(service["Dimensions"][1]["Value"])
    # S3 request metrics: the id of the artifacts bucket's metrics configuration
    (artifacts_id,) = [
        lid
        for lid, b in synth.resources(env, "Data", "AWS::S3::Bucket").items()
        if "MetricsConfigurations" in b["Properties"]
    ]
    buckets = synth.resources(env, "Data", "AWS::S3::Bucket")
    assert buckets[artifacts_id]["Properties"]["MetricsConfigurations"] == [{"Id": REQUEST_METRICS_ID}]
    s3 = [m for m in every if m["Namespace"] == "AWS/S3"]
    assert s3 and all(
        {d["Name"]: d["Value"] for d in m["Dimensions"]}["FilterId"] == REQUEST_METRICS_ID for m in s3
    )
    assert all(artifacts_id in json.dumps(m["Dimensions"]) for m in s3)
    # WAF: the web ACL's metric name, its region, all rules
    (acl,) = synth.resources(env, "Fleet", "AWS::WAFv2::WebACL").values()
    (waf,) = [m for m in every if m["Namespace"] == "AWS/WAFV2"]
    assert {d["Name"]: d["Value"] for d in waf["Dimensions"]} == {
        "WebACL": acl["Properties"]["VisibilityConfig"]["MetricName"],
        "Region": stage.config.region,
        "Rule": "ALL",
    }


def test_efs_alarms_exist_only_for_a_bursting_file_system(synth):
    # the workspaces file system uses elastic throughput: no burst credits, no I/O-limit alarm
    for env in ENVS:
        assert not is_bursting(synth.stages[env].data.workspaces.file_system)
        assert not [n for n in alarms(synth, env) if "-Efs-" in n]
    stack = cdk.Stack()
    vpc = cdk.aws_ec2.Vpc(stack, "Vpc")
    assert is_bursting(efs.FileSystem(stack, "Default", vpc=vpc))
    assert not is_bursting(
        efs.FileSystem(stack, "Elastic", vpc=vpc, throughput_mode=efs.ThroughputMode.ELASTIC)
    )


@pytest.mark.parametrize("env", ENVS)
def test_every_alarm_links_to_its_runbook_entry(synth, env):
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', runbook))
    everything = {
        **synth.resources(env, "Observability", ALARM),
        **synth.resources(env, "Observability", COMPOSITE),
    }
    for logical_id, alarm in everything.items():
        (anchor,) = re.findall(
            r"Runbook: docs/runbook\.md#([a-z0-9-]+)", alarm["Properties"]["AlarmDescription"]
        )
        assert anchor in anchors, (logical_id, anchor)


def test_the_stages_in_cdk_json_subscribe_nobody_but_keep_the_topic(synth):
    for env in ENVS:
        assert synth.stages[env].config.alarm_email is None
        assert len(synth.resources(env, "Observability", "AWS::SNS::Topic")) == 1
        assert synth.resources(env, "Observability", "AWS::SNS::Subscription") == {}


def test_alarm_email_subscribes_to_the_topic_and_its_absence_warns():
    stack = cdk.Stack()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an address given: no warning at all
        AlarmTopic(
            stack,
            "Paged",
            email="oncall@example.com",
            environment="prod",
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
    with pytest.warns(MissingAlarmEmail, match="environment 'dev' has no alarm_email"):
        AlarmTopic(stack, "Unpaged", email=None, environment="dev", removal_policy=cdk.RemovalPolicy.DESTROY)
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::SNS::Topic", 2)
    template.resource_count_is("AWS::SNS::Subscription", 1)
    template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "oncall@example.com"}
    )
    # the CloudWatch service may encrypt for each topic's key
    template.has_resource_properties(
        "AWS::KMS::Key",
        {"KeyPolicy": {"Statement": Match.array_with([Match.object_like(
            {"Principal": {"Service": "cloudwatch.amazonaws.com"}, "Action": ["kms:Decrypt", "kms:GenerateDataKey*"]}
        )])}},
    )  # fmt: skip


def raw_settings(**overrides):
    context = json.loads((ROOT / "cdk.json").read_text())["context"]["outpost:environments"]
    return {"dev": {**context["dev"], **overrides}}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"alarm_email": "not-an-address"}, "'alarm_email' = 'not-an-address': not an e-mail address"),
        ({"alarms": {"queue_depth": -1}}, "'alarms.queue_depth' = -1: must be a non-negative integer"),
        ({"alarms": {"queue_depth": "100"}}, "'alarms.queue_depth' = '100': must be a non-negative integer"),
        (
            {"alarms": {"agent_cpu_percent": 101}},
            "'alarms.agent_cpu_percent' = 101: a percentage is at most 100",
        ),
        ({"alarms": {"queue_dept": 5}}, "'alarms.queue_dept' = 5: unknown threshold"),
        ({"alarms": [5]}, "'alarms' = [5]: must be a mapping"),
    ],
)
def test_bad_alarm_settings_are_refused_with_one_clear_line(overrides, message):
    with pytest.raises(ConfigError) as error:
        load_environments(raw_settings(**overrides), selected="dev", default_region="us-east-1")
    assert message in str(error.value)


def test_alarm_settings_are_read_from_the_environment_settings():
    (dev,) = load_environments(
        raw_settings(alarm_email="oncall@example.com", alarms={"queue_depth": 7}),
        selected="dev",
        default_region="us-east-1",
    )
    assert dev.alarm_email == "oncall@example.com"
    assert dev.alarms.queue_depth == 7
    assert {
        f.name: getattr(dev.alarms, f.name) for f in fields(AlarmThresholds) if f.name != "queue_depth"
    } == {f.name: f.default for f in fields(AlarmThresholds) if f.name != "queue_depth"}


@pytest.mark.parametrize("env", ENVS)
def test_the_egress_proxy_alarms_below_its_size_and_when_silent(synth, env):
    (props,) = [p for name, p in alarms(synth, env).items() if "EgressProxy-BelowDesired" in name]
    assert props["ComparisonOperator"] == "LessThanThreshold"
    assert props["Threshold"] == synth.stages[env].config.nat_gateways  # one task per NAT gateway
    assert props["TreatMissingData"] == "breaching"  # no figure at all: no task runs
    assert "docs/runbook.md#egress-proxy-below-desired" in props["AlarmDescription"]
