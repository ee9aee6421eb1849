"""Widgets and alarms for what cdk-monitoring-constructs does not monitor: NAT gateways, EFS,
S3 request metrics, the WAF web ACL as WAF names it, and the control plane's HTTP errors and
latency at the load balancer.

Each metric carries the dimensions its service publishes:
- AWS/NATGateway: NatGatewayId, one per NAT gateway the VPC has;
- AWS/EFS: FileSystemId (StorageBytes also StorageClass=Total);
- AWS/S3 request metrics: BucketName + FilterId, the id of the bucket's metrics configuration;
- AWS/WAFV2: WebACL (the web ACL's visibility-config metric name), Region, Rule=ALL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from cdk_monitoring_constructs import CustomMetricGroup

from constructs.alarming import FLEET_HEALTH, RESOURCE_EXHAUSTION, alarmed

if TYPE_CHECKING:
    from stacks.config import AlarmThresholds

FIVE_MINUTES = Duration.minutes(5)
GIB = 1024**3


def _metric(
    namespace: str, name: str, dimensions: dict[str, str], statistic: str, label: str
) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=namespace,
        metric_name=name,
        dimensions_map=dimensions,
        statistic=statistic,
        label=label,
        period=FIVE_MINUTES,
    )


def api_groups(
    *,
    load_balancer: elbv2.IApplicationLoadBalancer,
    target_group: elbv2.IApplicationTargetGroup,
    thresholds: AlarmThresholds,
) -> list[CustomMetricGroup]:
    """The control plane's 5xx answers and latency, from CDK's own load-balancer metrics."""
    t = thresholds
    target_5xx = target_group.metrics.http_code_target(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, statistic="Sum")
    lb_5xx = load_balancer.metrics.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT, statistic="Sum")
    latency = target_group.metrics.target_response_time(statistic="p90")
    return [
        CustomMetricGroup(
            title="Control plane: 5xx answers (per 5 min)",
            metrics=[
                alarmed(target_5xx, "Api-Target5xx", t.api_5xx, composite=FLEET_HEALTH, anchor="api-5xx"),
                alarmed(lb_5xx, "Api-LoadBalancer5xx", t.api_5xx, composite=FLEET_HEALTH, anchor="api-5xx"),
            ],
        ),
        CustomMetricGroup(
            title="Control plane: response time p90 (s)",
            metrics=[
                alarmed(
                    latency,
                    "Api-LatencyP90",
                    t.api_latency_p90_ms / 1000,
                    composite=FLEET_HEALTH,
                    anchor="api-latency",
                    periods=3,
                )
            ],
        ),
    ]


def nat_groups(*, nat_gateway_ids: list[str], thresholds: AlarmThresholds) -> list[CustomMetricGroup]:
    ns = "AWS/NATGateway"
    groups = []
    for index, gateway in enumerate(nat_gateway_ids, start=1):
        dims = {"NatGatewayId": gateway}
        groups += [
            CustomMetricGroup(
                title=f"NAT gateway {index}: traffic (bytes per 5 min)",
                metrics=[
                    _metric(ns, name, dims, "Sum", name)
                    for name in ("BytesOutToDestination", "BytesInFromDestination", "BytesOutToSource")
                ],
            ),
            CustomMetricGroup(
                title=f"NAT gateway {index}: errors and drops (per 5 min)",
                metrics=[
                    alarmed(
                        _metric(ns, "ErrorPortAllocation", dims, "Sum", "ErrorPortAllocation"),
                        f"Nat{index}-ErrorPortAllocation",
                        0,
                        composite=RESOURCE_EXHAUSTION,
                        anchor="nat-port-allocation",
                    ),
                    alarmed(
                        _metric(ns, "PacketsDropCount", dims, "Sum", "PacketsDropCount"),
                        f"Nat{index}-PacketsDropped",
                        thresholds.nat_packets_dropped,
                        composite=RESOURCE_EXHAUSTION,
                        anchor="nat-packets-dropped",
                    ),
                ],
            ),
            CustomMetricGroup(
                title=f"NAT gateway {index}: connections",
                metrics=[_metric(ns, "ActiveConnectionCount", dims, "Maximum", "active")],
            ),
        ]
    return groups


def efs_groups(
    *, file_system_id: str, bursting: bool, thresholds: AlarmThresholds
) -> list[CustomMetricGroup]:
    """Burst credits and the I/O limit exist only in bursting throughput mode; elastic has neither."""
    ns = "AWS/EFS"
    dims = {"FileSystemId": file_system_id}
    groups = [
        CustomMetricGroup(
            title="EFS throughput (bytes per 5 min)",
            metrics=[_metric(ns, n, dims, "Sum", n) for n in ("TotalIOBytes", "MeteredIOBytes")],
        ),
        CustomMetricGroup(
            title="EFS client connections",
            metrics=[_metric(ns, "ClientConnections", dims, "Sum", "connections")],
        ),
        CustomMetricGroup(
            title="EFS storage (bytes)",
            metrics=[_metric(ns, "StorageBytes", {**dims, "StorageClass": "Total"}, "Average", "total")],
        ),
    ]
    if bursting:
        groups.append(
            CustomMetricGroup(
                title="EFS burst credits and I/O limit",
                metrics=[
                    alarmed(
                        _metric(ns, "BurstCreditBalance", dims, "Minimum", "burst credits (bytes)"),
                        "Efs-BurstCredits",
                        thresholds.efs_burst_credit_gib * GIB,
                        composite=RESOURCE_EXHAUSTION,
                        anchor="efs-burst-credits",
                        below=True,
                    ),
                    alarmed(
                        _metric(ns, "PercentIOLimit", dims, "Maximum", "I/O limit (%)"),
                        "Efs-IoLimit",
                        thresholds.efs_io_limit_percent,
                        composite=RESOURCE_EXHAUSTION,
                        anchor="efs-io-limit",
                    ),
                ],
            )
        )
    return groups


def s3_request_groups(
    *, bucket_name: str, filter_id: str, label: str, thresholds: AlarmThresholds
) -> list[CustomMetricGroup]:
    ns = "AWS/S3"
    dims = {"BucketName": bucket_name, "FilterId": filter_id}
    return [
        CustomMetricGroup(
            title=f"S3 {label}: requests (per 5 min)",
            metrics=[_metric(ns, n, dims, "Sum", n) for n in ("AllRequests", "GetRequests", "PutRequests")],
        ),
        CustomMetricGroup(
            title=f"S3 {label}: bytes (per 5 min)",
            metrics=[_metric(ns, n, dims, "Sum", n) for n in ("BytesDownloaded", "BytesUploaded")],
        ),
        CustomMetricGroup(
            title=f"S3 {label}: latency p90 (ms)",
            metrics=[_metric(ns, n, dims, "p90", n) for n in ("FirstByteLatency", "TotalRequestLatency")],
        ),
        CustomMetricGroup(
            title=f"S3 {label}: errors (per 5 min)",
            metrics=[
                alarmed(
                    _metric(ns, "4xxErrors", dims, "Sum", "4xx"),
                    f"S3-{label}-4xx",
                    thresholds.s3_4xx,
                    composite=FLEET_HEALTH,
                    anchor="s3-errors",
                ),
                alarmed(
                    _metric(ns, "5xxErrors", dims, "Sum", "5xx"),
                    f"S3-{label}-5xx",
                    thresholds.s3_5xx,
                    composite=FLEET_HEALTH,
                    anchor="s3-errors",
                ),
            ],
        ),
    ]


def waf_groups(*, web_acl_metric: str, region: str, thresholds: AlarmThresholds) -> list[CustomMetricGroup]:
    dims = {"WebACL": web_acl_metric, "Region": region, "Rule": "ALL"}
    return [
        CustomMetricGroup(
            title="WAF requests (per 5 min)",
            metrics=[
                _metric("AWS/WAFV2", "AllowedRequests", dims, "Sum", "allowed"),
                alarmed(
                    _metric("AWS/WAFV2", "BlockedRequests", dims, "Sum", "blocked"),
                    "Waf-Blocked",
                    thresholds.waf_blocked,
                    composite=FLEET_HEALTH,
                    anchor="waf-blocked",
                ),
            ],
        )
    ]


def egress_proxy_group(*, cluster_name: str, service_name: str, desired: int) -> CustomMetricGroup:
    """The egress proxy's running tasks (Container Insights): while none runs, agents' HTTPS to
    git hosts and registries fails; silence means none runs either."""
    running = cloudwatch.Metric(
        namespace="ECS/ContainerInsights",
        metric_name="RunningTaskCount",
        dimensions_map={"ClusterName": cluster_name, "ServiceName": service_name},
        statistic="Minimum",
        label="running tasks",
        period=Duration.minutes(1),
    )
    return CustomMetricGroup(
        title="Egress proxy: running tasks",
        metrics=[
            alarmed(
                running,
                "EgressProxy-BelowDesired",
                desired,
                composite=FLEET_HEALTH,
                anchor="egress-proxy-below-desired",
                below=True,
                periods=5,
                missing=cloudwatch.TreatMissingData.BREACHING,
            )
        ],
    )
