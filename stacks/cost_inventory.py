"""What a stage's synthesized templates hold, counted for stacks/cost.py.

NAT gateways or instances, the load balancer and its public addresses, WAF rules, interface
endpoints per zone, keys, secrets, the trail, Container Insights, alarms and their metrics,
dashboards, tables, queues, DNS Firewall, the file system, the control plane's service and
every agent's task size; from the control plane's variables and agents/registry.py, each
agent's warm pool and the engine's intervals. Importable without aws-cdk-lib.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from agents.infra_prices import FREE_STORAGE_GIB, AwsPrices
from agents.registry import AGENTS
from control_plane.engine.config import EngineSettings

Templates = Mapping[str, Mapping[str, Any]]  # stack id -> template JSON


@dataclass(frozen=True)
class TaskSize:
    cpu: int
    memory_mib: int
    storage_gib: int
    architecture: str

    def hourly(self, prices: AwsPrices, *, spot: bool) -> float:
        return prices.task_hourly(
            cpu=self.cpu,
            memory_mib=self.memory_mib,
            storage_gib=self.storage_gib,
            architecture=self.architecture,
            spot=spot,
        )

    def __str__(self) -> str:
        storage = f", {self.storage_gib} GB storage" if self.storage_gib > FREE_STORAGE_GIB else ""
        return f"{self.cpu / 1024:g} vCPU / {self.memory_mib / 1024:g} GB {self.architecture}{storage}"


@dataclass(frozen=True)
class Inventory:
    """What one stage's templates hold, counted."""

    env: str
    nat_gateways: int
    nat_instances: tuple[str, ...]  # instance types
    elastic_ips: int
    instance_public_ips: int
    load_balancers: int
    load_balancer_public_ips: int  # an internet-facing load balancer has one per zone
    web_acls: int
    waf_rules: int
    interface_endpoints: int
    interface_endpoint_zones: int  # endpoints x zones: what is billed by the hour
    logs_endpoint: bool
    ecr_endpoints: bool
    kms_keys: int
    secrets: int
    trails: int
    trail_to_logs: bool
    trail_data_events: bool
    container_insights: str  # disabled, enabled or enhanced
    log_groups: int
    flow_logs: int
    alarm_metrics: int
    metric_alarms: int
    composite_alarms: int
    dashboards: int
    tables: int
    queues: int
    buckets: int
    dns_firewall_domains: int
    dns_firewalls: int
    file_systems: int
    private_namespaces: int
    repositories: int
    backup_plans: int
    control_plane: TaskSize
    control_plane_count: int
    egress_proxy: TaskSize | None  # the egress proxy's service (docs/egress.md), when deployed
    egress_proxy_count: int
    agents: Mapping[str, TaskSize]
    warm_pool: Mapping[str, int]
    idle_timeout_s: float
    scale_interval_s: float
    reconcile_interval_s: float

    @property
    def public_ipv4(self) -> int:
        return self.elastic_ips + self.instance_public_ips + self.load_balancer_public_ips

    @property
    def warm_tasks(self) -> int:
        return sum(self.warm_pool.values())


def _resources(templates: Templates) -> Iterator[tuple[str, dict[str, Any]]]:
    for stack in sorted(templates):
        yield from sorted(templates[stack].get("Resources", {}).items())


def _of_type(templates: Templates, type_: str) -> list[dict[str, Any]]:
    return [
        resource.get("Properties", {}) for _, resource in _resources(templates) if resource["Type"] == type_
    ]


def _environment(container: Mapping[str, Any]) -> dict[str, Any]:
    return {pair["Name"]: pair.get("Value") for pair in container.get("Environment", [])}


def _size(task_definition: Mapping[str, Any]) -> TaskSize:
    return TaskSize(
        cpu=int(task_definition["Cpu"]),
        memory_mib=int(task_definition["Memory"]),
        storage_gib=int(task_definition.get("EphemeralStorage", {}).get("SizeInGiB", FREE_STORAGE_GIB)),
        architecture=task_definition.get("RuntimePlatform", {}).get("CpuArchitecture", "X86_64"),
    )


def _engine_setting(environment: Mapping[str, Any], name: str) -> float:
    value = environment.get(f"OUTPOST_{name.upper()}")
    return float(value) if isinstance(value, str) else float(EngineSettings.model_fields[name].default)


def inventory(env: str, templates: Templates) -> Inventory:
    """Counts one stage's resources; ValueError when its templates lack the control plane."""
    task_definitions = {
        logical_id: resource["Properties"]
        for logical_id, resource in _resources(templates)
        if resource["Type"] == "AWS::ECS::TaskDefinition"
    }
    services = {
        task_definitions[service["TaskDefinition"]["Ref"]]["ContainerDefinitions"][0]["Name"]: (
            service,
            task_definitions[service["TaskDefinition"]["Ref"]],
        )
        for service in _of_type(templates, "AWS::ECS::Service")
    }
    if "control-plane" not in services or set(services) - {"control-plane", "egress-proxy"}:
        raise ValueError(f"{env}: expected the control plane's ECS service, found {sorted(services)}")
    control_service, service_task = services["control-plane"]
    proxy = services.get("egress-proxy")
    control_environment = _environment(service_task["ContainerDefinitions"][0])
    agents: dict[str, TaskSize] = {}
    for task in task_definitions.values():
        for container in task["ContainerDefinitions"]:
            prefix = container.get("LogConfiguration", {}).get("Options", {}).get("awslogs-stream-prefix")
            if prefix in AGENTS:
                agents[prefix] = _size(task)
    raw_pool = control_environment.get("OUTPOST_WARM_POOL")
    settings = EngineSettings.model_construct(
        env=control_environment.get("OUTPOST_ENV", env),
        warm_pool=json.loads(raw_pool) if isinstance(raw_pool, str) else {},
    )
    endpoints = [
        p for p in _of_type(templates, "AWS::EC2::VPCEndpoint") if p.get("VpcEndpointType") == "Interface"
    ]
    endpoint_services = " ".join(json.dumps(p.get("ServiceName")) for p in endpoints)
    instances = [p for p in _of_type(templates, "AWS::EC2::Instance") if p.get("SourceDestCheck") is False]
    load_balancers = [p for p in _of_type(templates, "AWS::ElasticLoadBalancingV2::LoadBalancer")]
    clusters = _of_type(templates, "AWS::ECS::Cluster")
    insights = {s["Name"]: s["Value"] for c in clusters for s in c.get("ClusterSettings", [])}
    trails = _of_type(templates, "AWS::CloudTrail::Trail")
    alarms = _of_type(templates, "AWS::CloudWatch::Alarm")
    return Inventory(
        env=env,
        nat_gateways=len(_of_type(templates, "AWS::EC2::NatGateway")),
        nat_instances=tuple(str(p.get("InstanceType", "?")) for p in instances),
        elastic_ips=len(_of_type(templates, "AWS::EC2::EIP")),
        instance_public_ips=sum(
            any(ni.get("AssociatePublicIpAddress") for ni in p.get("NetworkInterfaces", []))
            for p in instances
        ),
        load_balancers=len(load_balancers),
        load_balancer_public_ips=sum(
            len(p.get("Subnets", [])) for p in load_balancers if p.get("Scheme") == "internet-facing"
        ),
        web_acls=len(_of_type(templates, "AWS::WAFv2::WebACL")),
        waf_rules=sum(len(p.get("Rules", [])) for p in _of_type(templates, "AWS::WAFv2::WebACL")),
        interface_endpoints=len(endpoints),
        interface_endpoint_zones=sum(len(p.get("SubnetIds", [])) for p in endpoints),
        logs_endpoint=".logs" in endpoint_services,
        ecr_endpoints=".ecr.dkr" in endpoint_services,
        kms_keys=len(_of_type(templates, "AWS::KMS::Key")),
        secrets=len(_of_type(templates, "AWS::SecretsManager::Secret")),
        trails=len(trails),
        trail_to_logs=any("CloudWatchLogsLogGroupArn" in t for t in trails),
        trail_data_events=any(t.get("AdvancedEventSelectors") or t.get("EventSelectors") for t in trails),
        container_insights=insights.get("containerInsights", "disabled"),
        log_groups=len(_of_type(templates, "AWS::Logs::LogGroup")),
        flow_logs=len(_of_type(templates, "AWS::EC2::FlowLog")),
        # an alarm on metric math pays for every metric in it
        alarm_metrics=sum(
            sum("MetricStat" in m for m in a["Metrics"]) if "Metrics" in a else 1 for a in alarms
        ),
        metric_alarms=len(alarms),
        composite_alarms=len(_of_type(templates, "AWS::CloudWatch::CompositeAlarm")),
        dashboards=len(_of_type(templates, "AWS::CloudWatch::Dashboard")),
        tables=len(_of_type(templates, "AWS::DynamoDB::GlobalTable"))
        + len(_of_type(templates, "AWS::DynamoDB::Table")),
        queues=len(_of_type(templates, "AWS::SQS::Queue")),
        buckets=len(_of_type(templates, "AWS::S3::Bucket")),
        dns_firewall_domains=sum(
            len(p.get("Domains", [])) for p in _of_type(templates, "AWS::Route53Resolver::FirewallDomainList")
        ),
        dns_firewalls=len(_of_type(templates, "AWS::Route53Resolver::FirewallRuleGroupAssociation")),
        file_systems=len(_of_type(templates, "AWS::EFS::FileSystem")),
        private_namespaces=len(_of_type(templates, "AWS::ServiceDiscovery::PrivateDnsNamespace")),
        repositories=len(_of_type(templates, "AWS::ECR::Repository")),
        backup_plans=len(_of_type(templates, "AWS::Backup::BackupPlan")),
        control_plane=_size(service_task),
        control_plane_count=int(control_service.get("DesiredCount", 1)),
        egress_proxy=_size(proxy[1]) if proxy else None,
        egress_proxy_count=int(proxy[0].get("DesiredCount", 1)) if proxy else 0,
        agents=dict(sorted(agents.items())),
        warm_pool={name: size for name, size in sorted(settings.warm_pool_sizes(agents).items()) if size},
        idle_timeout_s=_engine_setting(control_environment, "runner_idle_timeout_s"),
        scale_interval_s=_engine_setting(control_environment, "scale_interval_s"),
        reconcile_interval_s=_engine_setting(control_environment, "reconcile_interval_s"),
    )
