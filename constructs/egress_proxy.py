"""The egress proxy service: agent tasks' only way to the internet (docs/egress.md).

It runs the control-plane image's ``python -m control_plane.egress_proxy`` as its own small
Fargate service, not inside the control plane's task: the proxy parses what untrusted agents
send it, and a task role would put the control plane's data permissions one bug away from
them. So the proxy has no task role at all, runs read-only as the numeric non-root user with
every capability dropped, and its security group reaches only HTTPS outside the VPC.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs

from constructs import Construct
from constructs.fargate_parts import (
    http_health_check,
    logs_and_execution_role,
    private_service,
    without_capabilities,
    without_task_role,
)
from control_plane.egress_proxy import HEALTH_PATH

CLOUD_MAP_NAME = "egress"


class EgressProxy(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cluster: ecs.ICluster,
        repository: ecr.IRepository,
        image_tag: str,
        listeners: Mapping[str, tuple[int, Sequence[str]]],
        vpc_cidr: str,
        outside_vpc: Sequence[str],
        desired_count: int,
        ecr_auth_policy: iam.IManagedPolicy,
        log_retention: logs.RetentionDays,
        logs_key: kms.IKey,
        removal_policy: RemovalPolicy,
    ) -> None:
        """``listeners``: agent → (port, host patterns its tasks may reach)."""
        super().__init__(scope, id)
        self.ports = {agent: port for agent, (port, _) in listeners.items()}
        self.log_group, self.execution_role = logs_and_execution_role(
            self,
            repository=repository,
            ecr_auth_policy=ecr_auth_policy,
            log_retention=log_retention,
            logs_key=logs_key,
            removal_policy=removal_policy,
        )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=256,
            memory_limit_mib=512,
            runtime_platform=ecs.RuntimePlatform(
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
                cpu_architecture=ecs.CpuArchitecture.ARM64,
            ),
            execution_role=self.execution_role,
        )
        without_task_role(self.task_definition)
        self.task_definition.add_container(
            "egress-proxy",
            image=ecs.ContainerImage.from_ecr_repository(repository, tag=image_tag),
            command=["python", "-m", "control_plane.egress_proxy"],
            user="10001:10001",
            readonly_root_filesystem=True,
            linux_parameters=without_capabilities(self, init_process=True),
            port_mappings=[ecs.PortMapping(container_port=port) for port in sorted(self.ports.values())],
            environment={
                "OUTPOST_EGRESS_PROXY_LISTENERS": json.dumps(
                    {
                        str(port): {"agent": agent, "hosts": list(hosts)}
                        for agent, (port, hosts) in listeners.items()
                    },
                    sort_keys=True,
                ),
                # refused whatever a name resolves to: the load balancer, endpoints, other tasks
                "OUTPOST_EGRESS_PROXY_DENIED_NETWORKS": json.dumps([vpc_cidr]),
            },
            logging=ecs.LogDrivers.aws_logs(stream_prefix="egress-proxy", log_group=self.log_group),
            health_check=http_health_check(min(self.ports.values()), HEALTH_PATH, start_period_s=10),
        )
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=cluster.vpc,
            description="Outpost egress proxy",
            allow_all_outbound=False,
        )
        for cidr in outside_vpc:
            self.security_group.add_egress_rule(
                ec2.Peer.ipv4(cidr), ec2.Port.tcp(443), "HTTPS outside the VPC: allowlisted hosts only"
            )
        self.service = private_service(
            self,
            cluster=cluster,
            task_definition=self.task_definition,
            desired_count=desired_count,
            security_group=self.security_group,
            cloud_map_name=CLOUD_MAP_NAME,
        )

    def admit(self, agent: str, group: ec2.ISecurityGroup) -> None:
        """Let ``group``, the security group of ``agent``'s tasks alone, reach that agent's
        listener and no other: the port picks the allowlist, so one group per agent is what
        keeps an agent's tasks to its own list."""
        port = ec2.Port.tcp(self.ports[agent])
        group.add_egress_rule(self.security_group, port, f"egress proxy, {agent}")
        self.security_group.add_ingress_rule(group, port, f"{agent} tasks")
