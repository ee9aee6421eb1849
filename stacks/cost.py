"""What a stage costs a month: its inventory (stacks/cost_inventory.py) priced with agents/aws_prices.

`estimate()` prices what a stage's templates hold, idle and at a stated load (`Load`). What the
templates cannot say (bytes, calls, log lines) is an assumption in `Load` or `Activity`, each
one named. Importable without aws-cdk-lib or AWS credentials; deterministic for given templates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from agents.infra_prices import AwsPrices
from agents.registry import AGENTS
from stacks.cost_inventory import Inventory, TaskSize, Templates, inventory

__all__ = [
    "Activity",
    "Estimate",
    "Inventory",
    "Item",
    "Load",
    "TaskSize",
    "Templates",
    "estimate",
    "inventory",
]

HOURS = 730  # a month, as AWS prices it
SECONDS = HOURS * 3600
DAYS = HOURS / 24
GB = 1e9


@dataclass(frozen=True)
class Load:
    """The stated load: `dispatches_per_day` jobs of `minutes` each on `agent`, and what one
    job moves besides its task (assumptions, not measurements)."""

    dispatches_per_day: int = 100
    minutes: float = 10.0
    agent: str = "claude"
    start_s: float = 60.0  # image pull and start, billed like the run
    nat_mb: float = 100.0  # checkout, package installs, model calls through the gateway
    api_requests: int = 30  # a client's create and status calls through the load balancer and WAF
    ddb_writes: int = 16  # the dispatch's record, its task's record, claim, outcome, usage
    ddb_reads: int = 16
    sqs_requests: int = 6  # enqueue, receive, delete, task-state events
    log_kb: float = 200.0  # the runner's and the agent's output
    trail_events: int = 12  # RunTask, the image pull's ECR calls, StopTask
    dns_queries: int = 100
    artifact_mb: float = 5.0  # the result bundle, kept ARTIFACT_RETENTION_DAYS (30)

    @property
    def per_month(self) -> float:
        return self.dispatches_per_day * DAYS

    def describe(self) -> str:
        return f"{self.dispatches_per_day} dispatches/day of {self.minutes:g} min on {self.agent}"


@dataclass(frozen=True)
class Activity:
    """What an idle stage does anyway (from the engine's loops; sizes are assumptions)."""

    api_call_kb: float = 2.0  # one AWS API call, request and answer
    emf_event_bytes: int = 400  # one metrics document in the control plane's log
    log_line_bytes: int = 200  # one control-plane log line (health checks, claims)
    trail_event_kb: float = 2.0  # one CloudTrail event as mirrored to CloudWatch Logs
    trail_baseline_per_day: int = 2000  # the account's own events (credentials, keys, AWS services)
    trail_s3_puts: int = 20000  # the trail's log files a month, every region of a multi-region trail
    flow_records_per_eni_minute: float = 10.0
    flow_record_bytes: int = 130
    logs_compression: float = 0.15  # stored bytes per ingested byte
    dns_queries_per_day: int = 5000
    kms_requests_per_key: int = 5000  # a month: log groups, queues, buckets and tables asking for data keys
    secrets_calls: int = 10000  # a month
    ecr_gb: float = 5.0  # the seven repositories' images, a few versions kept
    table_gb: float = 0.05  # idle tables hold the tenants, leases and little else
    container_insights_metrics: Mapping[str, int] = field(
        # metrics of ECS/ContainerInsights (standard): per cluster, per service, per task family
        # with a task running that hour (from the metric list of the ECS documentation)
        default_factory=lambda: {"cluster": 12, "service": 15, "family": 10}
    )
    performance_event_bytes: int = 2000  # Container Insights' task and container events, a task-minute


@dataclass(frozen=True)
class Item:
    name: str
    counted: str  # what the templates hold (and the assumed volume), in words
    idle: float  # $ a month
    load: float  # $ a month at the stated load (idle included)


@dataclass(frozen=True)
class Estimate:
    env: str
    region: str
    prices_as_of: str
    load: Load
    items: tuple[Item, ...]

    @property
    def idle(self) -> float:
        return round(sum(i.idle for i in self.items), 2)

    @property
    def at_load(self) -> float:
        return round(sum(i.load for i in self.items), 2)

    def largest(self, n: int = 5, *, at_load: bool = False) -> list[Item]:
        return sorted(self.items, key=lambda i: (-(i.load if at_load else i.idle), i.name))[:n]


def _item(name: str, counted: str, idle: float, load: float | None = None) -> Item:
    return Item(name, counted, round(idle, 2), round(idle if load is None else load, 2))


def estimate(
    inv: Inventory, prices: AwsPrices, load: Load | None = None, activity: Activity | None = None
) -> Estimate:
    load = load or Load()
    a = activity or Activity()
    p = prices
    if load.agent not in inv.agents:
        raise ValueError(f"{inv.env}: agent {load.agent!r} is not deployed there ({', '.join(inv.agents)})")
    job = inv.agents[load.agent]
    spot = AGENTS[load.agent].spot
    jobs = load.per_month
    job_hours = jobs * (load.minutes * 60 + load.start_s) / 3600
    agents = len(inv.agents)
    replicas = inv.control_plane_count

    # The warm pool: each task idles idle_timeout_s, exits and is replaced, so every slot is
    # always paying, and launches again every idle_timeout_s plus its start.
    pool_hourly = sum(inv.agents[n].hourly(p, spot=AGENTS[n].spot) * k for n, k in inv.warm_pool.items())
    launches = inv.warm_tasks * SECONDS / (inv.idle_timeout_s + load.start_s)

    # The engine's loops (control_plane/engine): per replica an admission query and a scaler
    # lease write every scale interval, a reconciler lease write every reconcile interval, an
    # event poll a second; the lease holder also reads the queue and every agent's tasks and
    # logs one metrics document per agent a pass, and lists the cluster's tasks.
    passes = SECONDS / inv.scale_interval_s
    reconciles = SECONDS / inv.reconcile_interval_s
    idle_wru = replicas * (passes + reconciles) + launches * 4
    idle_rru = replicas * passes * 0.5 + passes * 0.5 * (1 + agents) + reconciles * 1.5 + launches * 2
    idle_sqs = replicas * SECONDS + inv.warm_tasks * SECONDS / 20 + reconciles
    ecs_calls = reconciles * 2 + launches * 2
    emf_bytes = passes * agents * a.emf_event_bytes + launches * a.emf_event_bytes
    health_lines = (
        replicas * SECONDS * (2 / 30 + 1 / 15)
    )  # two load balancer nodes every 30 s, the container every 15 s
    cp_log_bytes = health_lines * a.log_line_bytes + launches * 2000
    logs_bytes = emf_bytes + cp_log_bytes
    load_logs_bytes = jobs * (load.log_kb * 1000 + 40 * a.emf_event_bytes)

    items: list[Item] = []
    add = items.append

    # Network: NAT, endpoints, public addresses
    api_bytes = (idle_sqs + ecs_calls) * a.api_call_kb * 1000
    if not inv.logs_endpoint:
        api_bytes += logs_bytes
    ecr_bytes = 0 if inv.ecr_endpoints else launches * 100_000  # manifests and tokens; layers come from S3
    nat_gb = (api_bytes + ecr_bytes) / GB
    load_nat_gb = jobs * load.nat_mb / 1000 + (0 if inv.logs_endpoint else load_logs_bytes / GB)
    if inv.nat_gateways:
        fixed = inv.nat_gateways * HOURS * p["nat_gateway_hour"]
        add(
            _item(
                "NAT gateway",
                f"{inv.nat_gateways} gateway(s); {nat_gb:.1f} GB idle, +{load_nat_gb:.0f} GB at load",
                fixed + nat_gb * p["nat_gateway_gb"],
                fixed + (nat_gb + load_nat_gb) * p["nat_gateway_gb"],
            )
        )
    if inv.nat_instances:
        hourly = sum(p[f"ec2_{t.replace('.', '_')}_hour"] for t in inv.nat_instances)
        volume = len(inv.nat_instances) * 8 * p["ebs_gp3_gb_month"]  # the AMI's 8 GB root volume
        add(
            _item(
                "NAT instance",
                f"{len(inv.nat_instances)} x {', '.join(sorted(set(inv.nat_instances)))} + 8 GB gp3; no per-GB fee",
                hourly * HOURS + volume,
            )
        )
    add(
        _item(
            "public IPv4 addresses",
            f"{inv.elastic_ips} EIP, {inv.instance_public_ips} instance, {inv.load_balancer_public_ips} load balancer",
            inv.public_ipv4 * HOURS * p["public_ipv4_hour"],
        )
    )
    if inv.interface_endpoints:
        endpoint_gb = (logs_bytes if inv.logs_endpoint else 0) / GB
        fixed = inv.interface_endpoint_zones * HOURS * p["interface_endpoint_az_hour"]
        add(
            _item(
                "interface endpoints",
                f"{inv.interface_endpoints} endpoints x zones = {inv.interface_endpoint_zones}",
                fixed + endpoint_gb * p["interface_endpoint_gb"],
                fixed + (endpoint_gb + load_logs_bytes / GB) * p["interface_endpoint_gb"],
            )
        )

    # The front door: load balancer and WAF
    requests = jobs * load.api_requests
    lcu = max(requests / SECONDS / 25, requests * 20_000 / GB / HOURS)  # new connections; 20 KB a request
    add(
        _item(
            "load balancer",
            f"{inv.load_balancers} ALB; {lcu:.3f} LCU at load",
            inv.load_balancers * HOURS * p["alb_hour"],
            inv.load_balancers * HOURS * (p["alb_hour"] + lcu * p["alb_lcu_hour"]),
        )
    )
    if inv.web_acls:
        fixed = inv.web_acls * p["waf_web_acl_month"] + inv.waf_rules * p["waf_rule_month"]
        add(
            _item(
                "WAF",
                f"{inv.web_acls} web ACL, {inv.waf_rules} managed rule groups; {requests / 1e6:.2f} M requests at load",
                fixed,
                fixed + requests / 1e6 * p["waf_million_requests"],
            )
        )

    # Compute: the control plane, the warm pool, the jobs
    add(
        _item(
            "control plane (Fargate)",
            f"{replicas} x {inv.control_plane}",
            replicas * HOURS * inv.control_plane.hourly(p, spot=False),
        )
    )
    if inv.egress_proxy is not None:
        add(
            _item(
                "egress proxy (Fargate)",
                f"{inv.egress_proxy_count} x {inv.egress_proxy}",
                inv.egress_proxy_count * HOURS * inv.egress_proxy.hourly(p, spot=False),
            )
        )
    pool = ", ".join(f"{k} {n}" for n, k in inv.warm_pool.items()) or "none"
    add(
        _item(
            "warm pool (idle agent tasks)",
            f"{pool}; relaunched every {inv.idle_timeout_s:g} s: {launches:,.0f} launches",
            pool_hourly * HOURS,
        )
    )
    add(
        _item(
            "dispatch tasks (Fargate)",
            f"{jobs:,.0f} x ({load.minutes:g} min + {load.start_s:g} s start) of {job}, {'Spot' if spot else 'on demand'}",
            0,
            job_hours * job.hourly(p, spot=spot),
        )
    )

    # Observability
    insight_metrics = 0.0
    performance_gb = 0.0
    load_insight_metrics = 0.0
    if inv.container_insights != "disabled":
        m = a.container_insights_metrics
        families = 1 + len(inv.warm_pool)
        insight_metrics = m["cluster"] + m["service"] + m["family"] * families
        running = replicas + inv.warm_tasks
        performance_gb = running * SECONDS / 60 * a.performance_event_bytes / GB
        busy_hours = 1 - math.exp(-load.dispatches_per_day / 24)  # hours with a job of that agent running
        if load.agent not in inv.warm_pool:
            load_insight_metrics = m["family"] * busy_hours
        load_performance_gb = job_hours * 60 * a.performance_event_bytes / GB
        add(
            _item(
                "Container Insights",
                f"{inv.container_insights}: {insight_metrics:.0f} metrics, {performance_gb:.2f} GB of events",
                insight_metrics * p["metric_month"] + performance_gb * p["logs_ingestion_gb"],
                (insight_metrics + load_insight_metrics) * p["metric_month"]
                + (performance_gb + load_performance_gb) * p["logs_ingestion_gb"],
            )
        )
    emf_metrics = agents * 3 + len(inv.warm_pool)  # pool size, idle, running per agent; launches
    add(
        _item(
            "Outpost custom metrics",
            f"{emf_metrics} idle (per agent: pool size, idle, running), +8 for the loaded agent",
            emf_metrics * p["metric_month"],
            (emf_metrics + 8) * p["metric_month"],
        )
    )
    alarms = inv.alarm_metrics * p["alarm_metric_month"] + inv.composite_alarms * p["composite_alarm_month"]
    add(
        _item(
            "alarms",
            f"{inv.metric_alarms} alarms on {inv.alarm_metrics} metrics, {inv.composite_alarms} composite",
            alarms,
        )
    )
    add(_item("dashboards", f"{inv.dashboards} dashboards", inv.dashboards * p["dashboard_month"]))
    trail_events = reconciles * 2 + launches * 10 + a.trail_baseline_per_day * DAYS
    trail_logs_bytes = trail_events * a.trail_event_kb * 1000 if inv.trail_to_logs else 0
    load_trail_bytes = jobs * load.trail_events * a.trail_event_kb * 1000 if inv.trail_to_logs else 0
    enis = inv.nat_gateways + len(inv.nat_instances) + 2 * inv.load_balancers + replicas + inv.warm_tasks
    enis += inv.interface_endpoint_zones
    flow_bytes = inv.flow_logs * enis * SECONDS / 60 * a.flow_records_per_eni_minute * a.flow_record_bytes
    load_flow_bytes = inv.flow_logs * job_hours * 60 * 3 * a.flow_records_per_eni_minute * a.flow_record_bytes
    ingested = (logs_bytes + trail_logs_bytes) / GB
    load_ingested = (load_logs_bytes + load_trail_bytes + requests * 1500) / GB  # 1.5 KB per WAF log record
    stored = (ingested + flow_bytes / GB) * a.logs_compression
    load_stored = (load_ingested + load_flow_bytes / GB) * a.logs_compression
    add(
        _item(
            "CloudWatch Logs",
            f"{inv.log_groups} groups; {ingested:.1f} GB idle (metrics documents, health checks, trail), "
            f"{flow_bytes / GB:.1f} GB flow logs",
            ingested * p["logs_ingestion_gb"]
            + flow_bytes / GB * p["vended_logs_gb"]
            + stored * p["logs_storage_gb_month"],
            (ingested + load_ingested) * p["logs_ingestion_gb"]
            + (flow_bytes + load_flow_bytes) / GB * p["vended_logs_gb"]
            + (stored + load_stored) * p["logs_storage_gb_month"],
        )
    )
    trail = a.trail_s3_puts / 1000 * p["s3_1k_puts"] if inv.trails else 0.0
    add(
        _item(
            "CloudTrail",
            f"{inv.trails} multi-region trail, management events only (first copy free), "
            f"{trail_events / 1e6:.2f} M events idle",
            trail,
        )
    )

    # Data: keys, secrets, tables, queues, buckets, file system, registry, backups
    add(
        _item(
            "KMS keys",
            f"{inv.kms_keys} customer keys (rotation adds $1 a key after a year)",
            inv.kms_keys * (p["kms_key_month"] + a.kms_requests_per_key / 10_000 * p["kms_10k_requests"]),
        )
    )
    add(
        _item(
            "Secrets Manager",
            f"{inv.secrets} secrets",
            inv.secrets * p["secret_month"] + a.secrets_calls / 10_000 * p["secrets_10k_calls"],
        )
    )
    table_storage = inv.tables * a.table_gb * (p["dynamodb_storage_gb_month"] + p["dynamodb_pitr_gb_month"])
    ddb_idle = idle_wru / 1e6 * p["dynamodb_million_wru"] + idle_rru / 1e6 * p["dynamodb_million_rru"]
    ddb_load = (
        jobs
        * (load.ddb_writes * p["dynamodb_million_wru"] + load.ddb_reads * p["dynamodb_million_rru"])
        / 1e6
    )
    add(
        _item(
            "DynamoDB (on demand)",
            f"{inv.tables} tables; {idle_wru / 1e6:.1f} M writes, {idle_rru / 1e6:.1f} M reads idle (engine loops)",
            ddb_idle + table_storage,
            ddb_idle + table_storage + ddb_load,
        )
    )
    add(
        _item(
            "SQS",
            f"{inv.queues} queues; {idle_sqs / 1e6:.1f} M requests idle (event and claim polls)",
            idle_sqs / 1e6 * p["sqs_million_requests"],
            (idle_sqs + jobs * load.sqs_requests) / 1e6 * p["sqs_million_requests"],
        )
    )
    artifacts_gb = jobs * load.artifact_mb / 1000  # 30 days' worth stays
    add(
        _item(
            "S3",
            f"{inv.buckets} buckets; {artifacts_gb:.0f} GB of artifacts at load",
            0.5 * p["s3_storage_gb_month"],  # trail and access logs
            (0.5 + artifacts_gb) * p["s3_storage_gb_month"] + jobs * 4 / 1000 * p["s3_1k_puts"],
        )
    )
    if inv.dns_firewalls:
        queries = a.dns_queries_per_day * DAYS + launches * 20
        fixed = inv.dns_firewall_domains * p["dns_firewall_domain_month"]
        add(
            _item(
                "DNS Firewall",
                f"{inv.dns_firewall_domains} domains; {queries / 1e6:.2f} M queries idle",
                fixed + queries / 1e6 * p["dns_firewall_million_queries"],
                fixed + (queries + jobs * load.dns_queries) / 1e6 * p["dns_firewall_million_queries"],
            )
        )
    add(
        _item(
            "Cloud Map",
            f"{inv.private_namespaces} private namespace, {replicas} instance(s)",
            inv.private_namespaces * p["hosted_zone_month"] + replicas * p["cloud_map_instance_month"],
        )
    )
    add(
        _item(
            "ECR",
            f"{inv.repositories} repositories, {a.ecr_gb:g} GB of images",
            a.ecr_gb * p["ecr_storage_gb_month"],
        )
    )
    add(
        _item(
            "EFS",
            f"{inv.file_systems} file system, empty (nothing mounts it)",
            0.0,
        )
    )
    add(
        _item(
            "AWS Backup",
            f"{inv.backup_plans} daily plan, 35 days of the tables",
            inv.backup_plans * inv.tables * a.table_gb * 35 * p["backup_gb_month"],
        )
    )
    return Estimate(
        env=inv.env,
        region=prices.region,
        prices_as_of=prices.as_of.isoformat(),
        load=load,
        items=tuple(items),
    )
