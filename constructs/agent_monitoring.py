"""Widgets and alarms per agent: its tasks (ECS Container Insights) and Outpost's own signals.

Agent tasks are standalone RunTask tasks, not services, so cdk-monitoring-constructs has no
monitoring for them. Container Insights publishes task metrics per task-definition family
under the dimensions ClusterName + TaskDefinitionFamily (namespace ECS/ContainerInsights);
the busiest task's utilization is Maximum(CpuUtilized) / Maximum(CpuReserved), since every
task of a family reserves the same size. Everything else is read from control_plane/metrics.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from cdk_monitoring_constructs import CustomMetricGroup

from constructs.alarming import FLEET_HEALTH, RESOURCE_EXHAUSTION, alarmed
from constructs.outpost_metrics import outpost_metric
from control_plane import metrics as m
from control_plane.lifecycle import Status

if TYPE_CHECKING:
    from stacks.config import AlarmThresholds

CONTAINER_INSIGHTS = "ECS/ContainerInsights"
ONE_MINUTE = Duration.minutes(1)
FIVE_MINUTES = Duration.minutes(5)
ONE_HOUR = Duration.hours(1)
SUCCESS_TARGET_PERCENT = 95  # SPEC §4: the target line on the success-rate graph
DURATION_STATISTICS = ("avg", "p50", "p90", "p99")


def container_insights(
    metric: str,
    *,
    cluster_name: str,
    family: str | None = None,
    statistic: str,
    period: Duration = ONE_MINUTE,
) -> cloudwatch.Metric:
    dimensions = {"ClusterName": cluster_name}
    if family is not None:
        dimensions["TaskDefinitionFamily"] = family
    return cloudwatch.Metric(
        namespace=CONTAINER_INSIGHTS,
        metric_name=metric,
        dimensions_map=dimensions,
        statistic=statistic,
        period=period,
    )


def _utilization(resource: str, *, agent: str, cluster_name: str, family: str) -> cloudwatch.MathExpression:
    def metric(name: str) -> cloudwatch.Metric:
        return container_insights(name, cluster_name=cluster_name, family=family, statistic="Maximum")

    return cloudwatch.MathExpression(
        # ids are unique per agent: one graph holds every agent's expression
        expression=f"100 * used_{agent} / reserved_{agent}",
        using_metrics={
            f"used_{agent}": metric(f"{resource}Utilized"),
            f"reserved_{agent}": metric(f"{resource}Reserved"),
        },
        label=agent,
        period=ONE_MINUTE,
    )


def _agent(agent: str) -> dict[str, str]:
    return {m.DIM_AGENT: agent}


def _sum(name: str, agent: str, *, period: Duration = FIVE_MINUTES) -> cloudwatch.Metric:
    return outpost_metric(name, _agent(agent), statistic="Sum", label=agent, period=period)


def _failures_group(
    title: str,
    agents: list[str],
    metric: Callable[[str], cloudwatch.Metric | cloudwatch.MathExpression],
    name: str,
    threshold: int,
    *,
    anchor: str,
) -> CustomMetricGroup:
    """A count of failures per agent, each agent's alarmed into the fleet-health composite."""
    return CustomMetricGroup(
        title=title,
        metrics=[
            alarmed(metric(a), f"Agent-{a}-{name}", threshold, composite=FLEET_HEALTH, anchor=anchor)
            for a in agents
        ],
    )


def fleet_groups(
    *, cluster_name: str, families: Mapping[str, str], thresholds: AlarmThresholds
) -> list[CustomMetricGroup]:
    """Fleet overview: tasks by agent and state, CPU/memory by agent, failures, cluster use."""
    agents = list(families)
    t = thresholds
    return [
        CustomMetricGroup(
            title="Running tasks by agent (claimed a job)",
            metrics=[
                outpost_metric(m.DISPATCHES_RUNNING, _agent(a), statistic="Maximum", label=a) for a in agents
            ],
        ),
        CustomMetricGroup(
            title="Idle tasks by agent (starting or waiting for a job)",
            metrics=[
                outpost_metric(m.WARM_POOL_IDLE, _agent(a), statistic="Maximum", label=a) for a in agents
            ],
        ),
        CustomMetricGroup(
            title="Tasks launched by agent", metrics=[_sum(m.TASKS_LAUNCHED, a) for a in agents]
        ),
        CustomMetricGroup(
            title="Agent CPU, busiest task (%)",
            metrics=[
                alarmed(
                    _utilization("Cpu", agent=a, cluster_name=cluster_name, family=f),
                    f"Agent-{a}-Cpu",
                    t.agent_cpu_percent,
                    composite=RESOURCE_EXHAUSTION,
                    anchor="agent-cpu",
                    periods=5,  # one-minute datapoints: five in a row is "for 5 minutes"
                )
                for a, f in families.items()
            ],
        ),
        CustomMetricGroup(
            title="Agent memory, busiest task (%)",
            metrics=[
                alarmed(
                    _utilization("Memory", agent=a, cluster_name=cluster_name, family=f),
                    f"Agent-{a}-Memory",
                    t.agent_memory_percent,
                    composite=RESOURCE_EXHAUSTION,
                    anchor="agent-memory",
                    periods=5,  # as for CPU
                )
                for a, f in families.items()
            ],
        ),
        _failures_group(
            "Task failures by agent (per 5 min)",
            agents,
            lambda a: _sum(m.TASK_FAILURES, a),
            "TaskFailures",
            t.task_failures,
            anchor="agent-task-failures",
        ),
        _failures_group(
            "Launch failures by agent (per 5 min)",
            agents,
            lambda a: _sum(m.LAUNCH_FAILURES, a),
            "LaunchFailures",
            t.launch_failures,
            anchor="agent-launch-failures",
        ),
        CustomMetricGroup(
            title="Cluster CPU and memory (reserved and used by all tasks)",
            metrics=[
                container_insights(
                    name, cluster_name=cluster_name, statistic="Sum", period=Duration.minutes(5)
                )
                for name in ("CpuReserved", "CpuUtilized", "MemoryReserved", "MemoryUtilized")
            ],
        ),
        CustomMetricGroup(
            title="Cluster network (bytes/s)",
            metrics=[
                container_insights(
                    name, cluster_name=cluster_name, statistic="Sum", period=Duration.minutes(5)
                )
                for name in ("NetworkRxBytes", "NetworkTxBytes")
            ],
        ),
    ]


def warm_pool_groups(*, pools: Mapping[str, int], thresholds: AlarmThresholds) -> list[CustomMetricGroup]:
    """Alarms for the agents that keep a warm pool: the pool stays short, or rarely serves a start."""
    if not pools:
        return []
    below_size = [
        alarmed(
            cloudwatch.MathExpression(
                # the scaler's gauges, each pass: configured size minus unclaimed tasks
                expression=f"size_{a} - idle_{a}",
                using_metrics={
                    f"size_{a}": outpost_metric(
                        m.WARM_POOL_SIZE, _agent(a), statistic="Minimum", period=ONE_MINUTE
                    ),
                    f"idle_{a}": outpost_metric(
                        m.WARM_POOL_IDLE, _agent(a), statistic="Maximum", period=ONE_MINUTE
                    ),
                },
                label=a,
                period=ONE_MINUTE,
            ),
            f"Agent-{a}-WarmPoolBelowSize",
            0,
            composite=FLEET_HEALTH,
            anchor="agent-warm-pool-below-size",
            periods=10,
            # the scaler reports every pass: silence means no scaler keeps the pool
            missing=cloudwatch.TreatMissingData.BREACHING,
        )
        for a in pools
    ]
    hit_rate = [
        alarmed(
            cloudwatch.MathExpression(
                expression=f"100 * hits_{a} / (hits_{a} + cold_{a})",
                using_metrics={
                    f"hits_{a}": _sum(m.WARM_POOL_HITS, a, period=ONE_HOUR),
                    f"cold_{a}": _sum(m.COLD_STARTS, a, period=ONE_HOUR),
                },
                label=a,
                period=ONE_HOUR,
            ),
            f"Agent-{a}-WarmPoolHitRate",
            thresholds.warm_pool_hit_rate_percent,
            composite=FLEET_HEALTH,
            anchor="agent-warm-pool-hit-rate",
            below=True,
        )
        for a in pools
    ]
    return [
        CustomMetricGroup(title="Warm pool short of its size (tasks)", metrics=below_size),
        CustomMetricGroup(title="Warm-pool hit rate, hourly (%)", metrics=hit_rate),
    ]


def performance_groups(*, agents: list[str], thresholds: AlarmThresholds) -> list[CustomMetricGroup]:
    """Agent performance: success, duration, errors by type, concurrency, throughput, starts."""
    t = thresholds
    groups = [
        CustomMetricGroup(
            title="Success rate by agent (%)",
            metrics=[_success_rate(a) for a in agents],
            horizontal_annotations=[
                cloudwatch.HorizontalAnnotation(value=SUCCESS_TARGET_PERCENT, label="target")
            ],
        ),
        CustomMetricGroup(
            title="Concurrency: running dispatches by agent",
            metrics=[
                outpost_metric(m.DISPATCHES_RUNNING, _agent(a), statistic="Maximum", label=a) for a in agents
            ],
        ),
        CustomMetricGroup(
            title="Throughput: dispatches created by agent (per 5 min)",
            metrics=[_sum(m.DISPATCHES_CREATED, a) for a in agents],
        ),
        CustomMetricGroup(
            title="Warm-pool hits by agent (per 5 min)", metrics=[_sum(m.WARM_POOL_HITS, a) for a in agents]
        ),
        CustomMetricGroup(
            title="Cold starts by agent (per 5 min)", metrics=[_sum(m.COLD_STARTS, a) for a in agents]
        ),
        CustomMetricGroup(
            title="Dispatch to RUNNING, p90 (s)",
            metrics=[
                alarmed(
                    outpost_metric(m.QUEUE_WAIT, _agent(a), statistic="p90", label=a),
                    f"Agent-{a}-QueueWaitP90",
                    t.queue_wait_p90_s,
                    composite=FLEET_HEALTH,
                    anchor="agent-queue-wait",
                    periods=3,
                )
                for a in agents
            ],
        ),
        _failures_group(
            "Claim failures by agent (per 5 min)",
            agents,
            lambda a: _sum(m.CLAIM_FAILURES, a),
            "ClaimFailures",
            t.claim_failures,
            anchor="agent-claim-failures",
        ),
        _failures_group(
            "Dispatches dead-lettered by agent (per 5 min)",
            agents,
            lambda a: _sum(m.DISPATCHES_DEAD_LETTERED, a),
            "DeadLettered",
            t.dead_lettered,
            anchor="agent-dead-lettered",
        ),
        _failures_group(
            "Dispatches failed by the reconciler, by agent (per 5 min)",
            agents,
            _reconciler_failures,
            "ReconcilerFailures",
            t.reconciler_failures,
            anchor="agent-reconciler-failures",
        ),
    ]
    for a in agents:
        groups.append(
            CustomMetricGroup(
                title=f"{a}: duration of completed dispatches (s)",
                metrics=[
                    outpost_metric(
                        m.DISPATCH_DURATION,
                        {m.DIM_AGENT: a, m.DIM_STATUS: Status.COMPLETED.value},
                        statistic=statistic,
                        label=statistic,
                    )
                    for statistic in DURATION_STATISTICS
                ],
            )
        )
        groups.append(
            CustomMetricGroup(
                title=f"{a}: errors by type (per 5 min)",
                metrics=[
                    outpost_metric(
                        m.DISPATCH_FAILURES,
                        {m.DIM_AGENT: a, m.DIM_REASON: reason},
                        statistic="Sum",
                        label=reason,
                    )
                    for reason in m.FAILURE_REASONS
                ],
            )
        )
    return groups


def _success_rate(agent: str) -> cloudwatch.MathExpression:
    """Completed out of the dispatches that ran to an end (cancelled ones are nobody's failure)."""
    ended = {
        f"{status.value.lower()}_{agent}": outpost_metric(
            m.DISPATCHES_FINISHED, {m.DIM_AGENT: agent, m.DIM_STATUS: status.value}, statistic="Sum"
        )
        for status in (Status.COMPLETED, Status.FAILED, Status.TIMED_OUT)
    }
    return cloudwatch.MathExpression(
        expression=f"100 * FILL(completed_{agent}, 0) / ({' + '.join(f'FILL({k}, 0)' for k in ended)})",
        using_metrics=ended,
        label=agent,
        period=Duration.minutes(5),
    )


def _reconciler_failures(agent: str) -> cloudwatch.MathExpression:
    """One metric per reason the reconciler fails a dispatch for, summed: a metric math alarm
    reads at most 10 metrics (tests/infra/test_observability.py), so the reasons only the runner
    reports stay out."""
    by_reason = {
        f"{reason.replace('-', '_')}_{agent}": outpost_metric(
            m.RECONCILER_FAILURES, {m.DIM_AGENT: agent, m.DIM_REASON: reason}, statistic="Sum"
        )
        for reason in m.RECONCILER_REASONS
    }
    return cloudwatch.MathExpression(
        expression=" + ".join(f"FILL({k}, 0)" for k in by_reason),
        using_metrics=by_reason,
        label=agent,
        period=Duration.minutes(5),
    )
