"""The control-plane Fargate service behind an Application Load Balancer.

HTTPS when a certificate is configured (HTTP then only redirects), otherwise HTTP limited to
the configured CIDR blocks. `/internal/*` (the runners' claim protocol) and `/gateway/*` (the
agents' model gateway) are refused at the load balancer: only agent tasks use them, and they
reach the service inside the VPC through its Cloud Map name.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import ArnFormat, Duration, Names, RemovalPolicy, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_wafv2 as wafv2

from constructs import Construct
from constructs.fargate_parts import (
    http_health_check,
    logs_and_execution_role,
    private_service,
    without_capabilities,
)
from constructs.service_role import service_role

PORT = 8080
HEALTH_PATH = "/health/live"
CLOUD_MAP_NAME = "control-plane"


class ControlPlaneService(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cluster: ecs.ICluster,
        repository: ecr.IRepository,
        image_tag: str,
        cpu: int,
        memory: int,
        desired_count: int,
        max_count: int,
        environment: dict[str, str],
        admin_secret: secretsmanager.ISecret,
        operator_secrets: Mapping[str, secretsmanager.ISecret],
        secret_key: kms.IKey,
        task_statements: list[iam.PolicyStatement],
        ecr_auth_policy: iam.IManagedPolicy,
        task_managed_policies: list[iam.IManagedPolicy],
        ingress_cidrs: list[str],
        certificate_arn: str | None,
        web_acl: bool = True,
        internet_facing: bool = True,
        access_logs_bucket: s3.IBucket,
        log_retention: logs.RetentionDays,
        logs_key: kms.IKey,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, id)
        self._log_retention, self._logs_key, self._removal_policy = log_retention, logs_key, removal_policy
        vpc = cluster.vpc
        self.log_group, self.execution_role = logs_and_execution_role(
            self,
            repository=repository,
            ecr_auth_policy=ecr_auth_policy,
            log_retention=log_retention,
            logs_key=logs_key,
            removal_policy=removal_policy,
            # Operator-made secrets are named, not generated: their ARNs end in a random suffix.
            secret_arns=[
                admin_secret.secret_arn,
                *(f"{s.secret_arn}-??????" for s in operator_secrets.values()),
            ],
            key_arns=[secret_key.key_arn],
        )
        self.task_role = service_role(
            self,
            "TaskRole",
            service="ecs-tasks.amazonaws.com",
            statements=task_statements,
            managed_policies=task_managed_policies,
        )
        self.task_definition = task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=cpu,
            memory_limit_mib=memory,
            runtime_platform=ecs.RuntimePlatform(
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
                cpu_architecture=ecs.CpuArchitecture.ARM64,
            ),
            execution_role=self.execution_role,
            task_role=self.task_role,
            volumes=[ecs.Volume(name="tmp")],  # task-local: the only writable path
        )
        container = task_definition.add_container(
            "control-plane",
            image=ecs.ContainerImage.from_ecr_repository(repository, tag=image_tag),
            user="10001:10001",
            readonly_root_filesystem=True,
            linux_parameters=without_capabilities(self, init_process=True),
            port_mappings=[ecs.PortMapping(container_port=PORT)],
            environment=environment,
            secrets={
                "OUTPOST_ADMIN_KEY": ecs.Secret.from_secrets_manager(admin_secret),
                **{name: ecs.Secret.from_secrets_manager(s) for name, s in operator_secrets.items()},
            },
            logging=ecs.LogDrivers.aws_logs(stream_prefix="control-plane", log_group=self.log_group),
            health_check=http_health_check(PORT, HEALTH_PATH, start_period_s=20),
        )
        container.add_mount_points(
            ecs.MountPoint(container_path="/tmp", source_volume="tmp", read_only=False)  # noqa: S108
        )

        self.load_balancer_security_group = ec2.SecurityGroup(
            self,
            "LoadBalancerSecurityGroup",
            vpc=vpc,
            description="Outpost load balancer",
            allow_all_outbound=False,
        )
        listener_port = 443 if certificate_arn else 80
        for cidr in ingress_cidrs:
            self.load_balancer_security_group.add_ingress_rule(
                ec2.Peer.ipv4(cidr), ec2.Port.tcp(listener_port), "API clients"
            )
            if certificate_arn:
                self.load_balancer_security_group.add_ingress_rule(
                    ec2.Peer.ipv4(cidr), ec2.Port.tcp(80), "redirect to HTTPS"
                )
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, description="Outpost control plane", allow_all_outbound=False
        )
        self.security_group.add_ingress_rule(
            self.load_balancer_security_group, ec2.Port.tcp(PORT), "load balancer"
        )
        # Calls to AWS APIs (through endpoints or NAT) are HTTPS.
        self.security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "AWS APIs over HTTPS")

        self.service = private_service(
            self,
            cluster=cluster,
            task_definition=task_definition,
            desired_count=desired_count,
            security_group=self.security_group,
            cloud_map_name=CLOUD_MAP_NAME,
        )

        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=vpc,
            internet_facing=internet_facing,
            security_group=self.load_balancer_security_group,
            drop_invalid_header_fields=True,
            deletion_protection=True,
        )
        self.load_balancer.log_access_logs(access_logs_bucket, prefix="load-balancer")
        target = elbv2.ApplicationTargetGroup(
            self,
            "Targets",
            vpc=vpc,
            port=PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            targets=[self.service],
            health_check=elbv2.HealthCheck(path=HEALTH_PATH, healthy_http_codes="200"),
            deregistration_delay=Duration.seconds(30),
        )
        if certificate_arn:
            listener = self.load_balancer.add_listener(
                "Https",
                port=443,
                open=False,
                certificates=[acm.Certificate.from_certificate_arn(self, "Certificate", certificate_arn)],
                ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
                default_target_groups=[target],
            )
            self.redirect_listener = self.load_balancer.add_listener(
                "Redirect",
                port=80,
                open=False,  # the security group admits only the configured CIDRs
                default_action=elbv2.ListenerAction.redirect(protocol="HTTPS", port="443", permanent=True),
            )
        else:
            listener = self.load_balancer.add_listener(
                "Http", port=80, open=False, default_target_groups=[target]
            )
        self.listener = listener
        listener.add_action(
            "RefuseInternal",
            priority=1,
            conditions=[elbv2.ListenerCondition.path_patterns(["/internal/*", "/gateway/*"])],
            action=elbv2.ListenerAction.fixed_response(
                404, content_type="application/json", message_body='{"title":"Not Found"}'
            ),
        )
        if web_acl:
            self._web_acl()
        if max_count > desired_count:
            scaling = self.service.auto_scale_task_count(min_capacity=desired_count, max_capacity=max_count)
            scaling.scale_on_cpu_utilization("Cpu", target_utilization_percent=60)
            scaling.scale_on_request_count("Requests", requests_per_target=500, target_group=target)

    def _web_acl(self) -> None:
        """AWS's managed common and known-bad-input rule sets in front of the API."""
        rules = [
            wafv2.CfnWebACL.RuleProperty(
                name=name,
                priority=priority,
                statement=wafv2.CfnWebACL.StatementProperty(
                    managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                        vendor_name="AWS", name=name
                    )
                ),
                override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                visibility_config=wafv2.CfnWebACL.VisibilityConfigProperty(
                    cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
                ),
            )
            for priority, name in enumerate(
                ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet")
            )
        ]
        acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            rules=rules,
            visibility_config=wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name="outpost-api", sampled_requests_enabled=True
            ),
        )
        wafv2.CfnWebACLAssociation(
            self,
            "WebAclAssociation",
            resource_arn=self.load_balancer.load_balancer_arn,
            web_acl_arn=acl.attr_arn,
        )
        # WAF delivers only to log groups named "aws-waf-logs-*", so this one has a physical name.
        stack = Stack.of(self)
        waf_logs = logs.LogGroup(
            self,
            "WafLogs",
            log_group_name=f"aws-waf-logs-outpost-{Names.unique_id(self)[-24:].lower()}",
            retention=self._log_retention,
            encryption_key=self._logs_key,
            removal_policy=self._removal_policy,
        )
        wafv2.CfnLoggingConfiguration(
            self,
            "WafLogging",
            resource_arn=acl.attr_arn,
            log_destination_configs=[
                stack.format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=waf_logs.log_group_name,
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
        )
