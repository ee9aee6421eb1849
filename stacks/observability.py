"""Observability stack: the three dashboards of SPEC §4, every alarm, and the topic they notify.

cdk-monitoring-constructs builds the widgets and alarms of the standard resources (the
control-plane service behind its load balancer, the queues, the tables, the buckets). One
MonitoringFacade renders one dashboard, so each of the three dashboards has its own facade;
all three share one alarm action (the SNS topic), one alarm-name prefix, and the composite
alarms roll up the alarms of all three. Outpost's own metrics and what the library does not
monitor (agent tasks, NAT, EFS, S3 request metrics, WAF by metric name) are custom metric
groups of the same facades, so they get the same actions, names and annotations.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_efs as efs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_wafv2 as wafv2
from cdk_monitoring_constructs import (
    AlarmFactoryDefaults,
    CustomMetricGroup,
    DefaultDashboardFactory,
    HealthyTaskCountThreshold,
    MaxMessageAgeThreshold,
    MaxMessageCountThreshold,
    MonitoringFacade,
    SnsAlarmActionStrategy,
    ThrottledEventsThreshold,
    UnhealthyTaskCountThreshold,
    UsageThreshold,
)

from constructs import Construct
from constructs.agent_monitoring import fleet_groups, performance_groups, warm_pool_groups
from constructs.alarm_topic import AlarmTopic
from constructs.alarming import (
    COMPOSITES,
    DISAMBIGUATOR,
    FLEET_HEALTH,
    RESOURCE_EXHAUSTION,
    library_alarm,
    runbook,
)
from constructs.infrastructure_monitoring import (
    api_groups,
    efs_groups,
    egress_proxy_group,
    nat_groups,
    s3_request_groups,
    waf_groups,
)
from constructs.secure_bucket import REQUEST_METRICS_ID
from stacks.config import EnvironmentConfig
from stacks.data import DataStack
from stacks.fleet import FleetStack
from stacks.network import NetworkStack
from stacks.policies import removal_policy

DASHBOARDS = ("Fleet", "Agents", "Infrastructure")  # fleet overview, agent performance, infrastructure
CONTROL_PLANE_CPU_PERCENT = 80
CONTROL_PLANE_MEMORY_PERCENT = 85


class ObservabilityStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: EnvironmentConfig,
        network: NetworkStack,
        data: DataStack,
        fleet: FleetStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        self.alarm_topic = AlarmTopic(
            self,
            "Alarms",
            email=config.alarm_email,
            environment=config.name,
            removal_policy=removal_policy(config),
        )
        prefix = f"Outpost-{config.stage_name}"
        action = SnsAlarmActionStrategy(
            on_alarm_topic=self.alarm_topic.topic, on_ok_topic=self.alarm_topic.topic
        )
        self.facades = {
            name: MonitoringFacade(
                self,
                name,
                alarm_factory_defaults=AlarmFactoryDefaults(
                    alarm_name_prefix=prefix,
                    actions_enabled=True,
                    action=action,
                    evaluation_periods=1,
                    datapoints_to_alarm=1,
                ),
                dashboard_factory=DefaultDashboardFactory(
                    self,
                    f"{name}Dashboard",
                    dashboard_name_prefix=f"{prefix}-{name}",
                    create_dashboard=True,
                    create_summary_dashboard=False,
                    create_alarm_dashboard=False,
                ),
            )
            for name in DASHBOARDS
        }
        families = {name: task.task_definition.family for name, task in fleet.agents.items()}
        pools = {name: size for name in config.agents if (size := config.warm_pool_size(name)) > 0}

        self._fleet_overview(config, data, fleet, families, pools)
        self._agent_performance(config)
        self._infrastructure(config, network, data, fleet)
        self.composites = {
            tag: self.facades["Fleet"]
            .create_alarm_factory("Composite")
            .add_composite_alarm(
                [alarm for facade in self.facades.values() for alarm in facade.created_alarms_with_tag(tag)],
                disambiguator=tag,
                alarm_description=f"Outpost {config.name}: any {tag} alarm",
                runbook_link=runbook(tag),
            )
            for tag in COMPOSITES
        }

    def _fleet_overview(
        self,
        config: EnvironmentConfig,
        data: DataStack,
        fleet: FleetStack,
        families: dict[str, str],
        pools: dict[str, int],
    ) -> None:
        t = config.alarms
        facade = self.facades["Fleet"]
        control_plane = fleet.control_plane
        target_group = control_plane.node.find_child("Targets")
        assert isinstance(target_group, elbv2.ApplicationTargetGroup)
        facade.add_large_header(f"Outpost {config.name}: fleet overview")
        facade.monitor_fargate_application_load_balancer(
            fargate_service=control_plane.service,
            application_load_balancer=control_plane.load_balancer,
            application_target_group=target_group,
            alarm_friendly_name="ControlPlane",
            human_readable_name="Control plane",
            add_unhealthy_task_count_alarm={
                DISAMBIGUATOR: UnhealthyTaskCountThreshold(
                    max_unhealthy_tasks=0,
                    **library_alarm(composite=FLEET_HEALTH, anchor="api-unhealthy-hosts", periods=2),
                )
            },
            add_healthy_task_count_alarm={
                DISAMBIGUATOR: HealthyTaskCountThreshold(
                    min_healthy_tasks=config.control_plane_desired_count,
                    **library_alarm(composite=FLEET_HEALTH, anchor="api-below-minimum", periods=2),
                )
            },
            add_cpu_usage_alarm={
                DISAMBIGUATOR: UsageThreshold(
                    max_usage_percent=CONTROL_PLANE_CPU_PERCENT,
                    **library_alarm(composite=RESOURCE_EXHAUSTION, anchor="api-cpu-memory", periods=3),
                )
            },
            add_memory_usage_alarm={
                DISAMBIGUATOR: UsageThreshold(
                    max_usage_percent=CONTROL_PLANE_MEMORY_PERCENT,
                    **library_alarm(composite=RESOURCE_EXHAUSTION, anchor="api-cpu-memory", periods=3),
                )
            },
        )
        facade.monitor_custom(
            alarm_friendly_name="Api",
            human_readable_name="Control plane API",
            metric_groups=api_groups(
                load_balancer=control_plane.load_balancer, target_group=target_group, thresholds=t
            ),
        )
        if fleet.egress_proxy is not None and config.container_insights:
            facade.monitor_custom(
                alarm_friendly_name="EgressProxy",
                human_readable_name="Egress proxy",
                metric_groups=[
                    egress_proxy_group(
                        cluster_name=fleet.cluster.cluster_name,
                        service_name=fleet.egress_proxy.service.service_name,
                        desired=config.nat_gateways,
                    )
                ],
            )
        facade.monitor_custom(
            alarm_friendly_name="Agents",
            human_readable_name="Agent tasks",
            metric_groups=[
                *fleet_groups(cluster_name=fleet.cluster.cluster_name, families=families, thresholds=t),
                *warm_pool_groups(pools=pools, thresholds=t),
            ],
        )
        queues = {
            **{f"Dispatch-{a}": q for a, q in data.dispatch_queues.items()},
            "TaskEvents": data.task_events_queue,
        }
        for name, queue in queues.items():
            facade.monitor_sqs_queue(
                queue=queue,
                alarm_friendly_name=f"Queue-{name}",
                human_readable_name=f"Queue {name}",
                add_queue_max_size_alarm={
                    DISAMBIGUATOR: MaxMessageCountThreshold(
                        max_message_count=t.queue_depth,
                        **library_alarm(
                            composite=RESOURCE_EXHAUSTION, anchor="queue-depth", periods=5, minutes=1
                        ),
                    )
                },
                add_queue_max_message_age_alarm={
                    DISAMBIGUATOR: MaxMessageAgeThreshold(
                        max_age_in_seconds=t.queue_age_s,
                        **library_alarm(composite=FLEET_HEALTH, anchor="queue-age", minutes=1),
                    )
                },
            )
        facade.monitor_sqs_queue(
            queue=data.dead_letter_queue,
            alarm_friendly_name="DeadLetterQueue",
            human_readable_name="Dead-letter queue",
            add_queue_max_size_alarm={
                DISAMBIGUATOR: MaxMessageCountThreshold(
                    max_message_count=0,
                    **library_alarm(composite=FLEET_HEALTH, anchor="dlq-not-empty", minutes=1),
                )
            },
        )

    def _agent_performance(self, config: EnvironmentConfig) -> None:
        facade = self.facades["Agents"]
        facade.add_large_header(f"Outpost {config.name}: agent performance")
        facade.monitor_custom(
            alarm_friendly_name="Dispatches",
            human_readable_name="Dispatches by agent",
            metric_groups=performance_groups(agents=list(config.agents), thresholds=config.alarms),
        )

    def _infrastructure(
        self, config: EnvironmentConfig, network: NetworkStack, data: DataStack, fleet: FleetStack
    ) -> None:
        t = config.alarms
        facade = self.facades["Infrastructure"]
        facade.add_large_header(f"Outpost {config.name}: infrastructure")
        groups: list[CustomMetricGroup] = nat_groups(
            nat_gateway_ids=nat_gateway_ids(network.vpc), thresholds=t
        )
        file_system = data.workspaces.file_system
        groups += efs_groups(
            file_system_id=file_system.file_system_id, bursting=is_bursting(file_system), thresholds=t
        )
        groups += s3_request_groups(
            bucket_name=data.artifacts_bucket.bucket_name,
            filter_id=REQUEST_METRICS_ID,
            label="artifacts",
            thresholds=t,
        )
        web_acl = fleet.control_plane.node.try_find_child("WebAcl")
        if web_acl is not None:  # waf is off in cdk.json for a cheaper stage
            assert isinstance(web_acl, wafv2.CfnWebACL)
            visibility = web_acl.visibility_config
            assert isinstance(visibility, wafv2.CfnWebACL.VisibilityConfigProperty)
            groups += waf_groups(web_acl_metric=visibility.metric_name, region=self.region, thresholds=t)
        facade.monitor_custom(
            alarm_friendly_name="Infra", human_readable_name="Network, storage, WAF", metric_groups=groups
        )
        for name, bucket in {
            "Artifacts": data.artifacts_bucket,
            "AccessLogs": data.access_logs.bucket,
        }.items():
            facade.monitor_s3_bucket(
                bucket=bucket, alarm_friendly_name=f"Bucket-{name}", human_readable_name=name
            )
        for name, table in data.tables.items():
            throttles = ThrottledEventsThreshold(
                max_throttled_events_threshold=t.dynamodb_throttles,
                **library_alarm(composite=RESOURCE_EXHAUSTION, anchor="dynamodb-throttles"),
            )
            facade.monitor_dynamo_table(
                table=table,
                alarm_friendly_name=f"Table-{name}",
                human_readable_name=f"Table {name}",
                add_read_throttled_events_count_alarm={DISAMBIGUATOR: throttles},
                add_write_throttled_events_count_alarm={DISAMBIGUATOR: throttles},
            )


def nat_gateway_ids(vpc: ec2.IVpc) -> list[str]:
    """The NAT gateways the VPC really has: one in each public subnet that got one."""
    gateways = [subnet.node.try_find_child("NATGateway") for subnet in vpc.public_subnets]
    return [gateway.attr_nat_gateway_id for gateway in gateways if isinstance(gateway, ec2.CfnNatGateway)]


def is_bursting(file_system: efs.FileSystem) -> bool:
    """Bursting is EFS's default throughput mode (no ThroughputMode set)."""
    cfn = file_system.node.default_child
    assert isinstance(cfn, efs.CfnFileSystem)
    return cfn.throughput_mode in (None, "bursting")
