"""The VPC: two AZs, public + private subnets, NAT, flow logs, endpoints, closed default SG.

Nothing inside the VPC is open to the whole VPC: the interface endpoints admit only the
security groups the fleet stack names (agent tasks reach the ECR and logs endpoints, which
Fargate uses through the task's own network interface to start it and ship its logs; only the
control plane reaches Secrets Manager), and the gateway endpoints carry requests for this
account's buckets and tables only, plus ECR's image layers, so that a presigned URL or a
credential from another account gets nothing through them; the interface endpoints serve this
account's principals only (docs/egress.md).
"""

from __future__ import annotations

from aws_cdk import Aspects, Aws, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs

from constructs import Construct

VPC_CIDR = "10.0.0.0/16"
NAT_INSTANCE_TYPE = "t4g.nano"  # stacks/cost.py prices it as ec2_t4g_nano_hour


class Network(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        availability_zones: list[str],
        nat_gateways: int,
        nat: str = "gateway",
        interface_endpoints: bool,
        log_retention: logs.RetentionDays,
        logs_key: kms.IKey,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(VPC_CIDR),
            availability_zones=availability_zones,
            nat_gateways=nat_gateways,
            nat_gateway_provider=self._nat_provider(nat),
            restrict_default_security_group=True,
            subnet_configuration=[
                # Nothing in Outpost needs a public IP except the load balancer and NAT.
                ec2.SubnetConfiguration(
                    name="public",
                    subnet_type=ec2.SubnetType.PUBLIC,
                    cidr_mask=24,
                    map_public_ip_on_launch=False,
                ),
                ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20
                ),
            ],
        )
        self.nat_instances: list[ec2.Instance] = []
        if isinstance(self._nat, ec2.NatInstanceProviderV2):
            # Forward HTTPS from the private subnets, the only egress any task's group allows.
            self._nat.security_group.add_ingress_rule(
                ec2.Peer.ipv4(VPC_CIDR), ec2.Port.tcp(443), "HTTPS forwarded for the private subnets"
            )
            self.nat_instances = [
                child
                for subnet in self.vpc.public_subnets
                for child in subnet.node.children
                if isinstance(child, ec2.Instance)
            ]
            for instance in self.nat_instances:
                Aspects.of(instance).add(ec2.InstanceRequireImdsv2Aspect())
                cfn = instance.node.default_child
                assert isinstance(cfn, ec2.CfnInstance)
                # Its root volume encrypted, like every other store of the platform.
                cfn.block_device_mappings = [
                    ec2.CfnInstance.BlockDeviceMappingProperty(
                        device_name="/dev/xvda",
                        ebs=ec2.CfnInstance.EbsProperty(
                            encrypted=True, volume_size=8, volume_type="gp3", delete_on_termination=True
                        ),
                    )
                ]
        self._gateway_endpoints()
        flow_log_group = logs.LogGroup(
            self, "FlowLogs", retention=log_retention, encryption_key=logs_key, removal_policy=removal_policy
        )
        # A customer-managed policy instead of the inline one CDK would generate.
        flow_log_role = iam.Role(
            self, "FlowLogRole", assumed_by=iam.ServicePrincipal("vpc-flow-logs.amazonaws.com")
        )
        iam.ManagedPolicy(
            self,
            "FlowLogPolicy",
            roles=[flow_log_role],
            statements=[
                iam.PolicyStatement(
                    actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                    # The group's ARN ends in ":*", which covers its streams (one per network interface).
                    resources=[flow_log_group.log_group_arn],
                )
            ],
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(
                flow_log_group, flow_log_role.without_policy_updates()
            ),
            traffic_type=ec2.FlowLogTrafficType.ALL,
            max_aggregation_interval=ec2.FlowLogMaxAggregationInterval.ONE_MINUTE,
        )
        # Who may reach each group of interface endpoints is granted by the fleet stack, by
        # security group (None: this environment has no interface endpoints).
        self.task_endpoints_security_group: ec2.SecurityGroup | None = None
        self.secrets_endpoint_security_group: ec2.SecurityGroup | None = None
        if interface_endpoints:
            # Image pulls, log shipping and secret injection stay inside the VPC (and off the NAT bill).
            self.task_endpoints_security_group = ec2.SecurityGroup(
                self,
                "EndpointsSecurityGroup",
                vpc=self.vpc,
                description="Interface endpoints",
                allow_all_outbound=False,
            )
            self.secrets_endpoint_security_group = ec2.SecurityGroup(
                self,
                "SecretsEndpointSecurityGroup",
                vpc=self.vpc,
                description="Secrets Manager endpoint",
                allow_all_outbound=False,
            )
            for name, service, group in (
                ("EcrApi", ec2.InterfaceVpcEndpointAwsService.ECR, self.task_endpoints_security_group),
                (
                    "EcrDocker",
                    ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
                    self.task_endpoints_security_group,
                ),
                (
                    "Logs",
                    ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
                    self.task_endpoints_security_group,
                ),
                (
                    "SecretsManager",
                    ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
                    self.secrets_endpoint_security_group,
                ),
            ):
                endpoint = self.vpc.add_interface_endpoint(
                    name,
                    service=service,
                    security_groups=[group],
                    open=False,
                    # In as many zones as the stage has NAT gateways: a stage that accepts one
                    # zone's egress accepts one zone's endpoints (tasks in the other zone reach
                    # them across zones), and each zone costs $7.30 a month per endpoint.
                    subnets=ec2.SubnetSelection(subnets=self.vpc.private_subnets[:nat_gateways]),
                )
                # Only this account's principals: a credential from another account, brought
                # into a task, cannot use the endpoint to send anything to that account.
                endpoint.add_to_policy(
                    iam.PolicyStatement(
                        principals=[iam.AnyPrincipal()],
                        actions=["*"],
                        resources=["*"],
                        conditions={"StringEquals": {"aws:PrincipalAccount": Aws.ACCOUNT_ID}},
                    )
                )

    def _nat_provider(self, nat: str) -> ec2.NatProvider:
        """A managed NAT gateway per zone used, or (a cheaper dev stage) a t4g.nano NAT instance:
        about $4 a month instead of $33, no per-GB fee, but one instance without redundancy
        whose bandwidth is the nano's. Amazon Linux 2023 from its public SSM parameter,
        resolved at deploy time, so synth looks nothing up; IMDSv2 only."""
        if nat == "gateway":
            self._nat: ec2.NatProvider = ec2.NatProvider.gateway()
        else:
            self._nat = ec2.NatProvider.instance_v2(
                instance_type=ec2.InstanceType(NAT_INSTANCE_TYPE),
                machine_image=ec2.MachineImage.latest_amazon_linux2023(
                    cpu_type=ec2.AmazonLinuxCpuType.ARM_64
                ),
                default_allowed_traffic=ec2.NatTrafficDirection.OUTBOUND_ONLY,
                associate_public_ip_address=True,
            )
        return self._nat

    def _gateway_endpoints(self) -> None:
        """S3 and DynamoDB gateway endpoints that carry requests for this account's resources only.

        Agent tasks reach S3 through the gateway endpoint (their artifact uploads use presigned
        URLs; Fargate fetches their image layers from ECR's bucket), and nothing but a policy can
        stop a request there: security groups see only S3's addresses.
        """
        s3 = self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
        s3.add_to_policy(
            iam.PolicyStatement(
                principals=[iam.AnyPrincipal()],
                actions=["s3:*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:ResourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        # ECR keeps image layers in a bucket of its own (ECR's VPC endpoint documentation).
        s3.add_to_policy(
            iam.PolicyStatement(
                principals=[iam.AnyPrincipal()],
                actions=["s3:GetObject"],
                resources=[f"arn:{Aws.PARTITION}:s3:::prod-{Aws.REGION}-starport-layer-bucket/*"],
            )
        )
        dynamodb = self.vpc.add_gateway_endpoint(
            "DynamoDb", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB
        )
        dynamodb.add_to_policy(
            iam.PolicyStatement(
                principals=[iam.AnyPrincipal()],
                actions=["dynamodb:*"],
                resources=[f"arn:{Aws.PARTITION}:dynamodb:{Aws.REGION}:{Aws.ACCOUNT_ID}:table/*"],
            )
        )
