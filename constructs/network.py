"""The VPC: two AZs, public + private subnets, NAT, flow logs, endpoints, closed default SG."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs

from constructs import Construct

VPC_CIDR = "10.0.0.0/16"


class Network(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        availability_zones: list[str],
        nat_gateways: int,
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
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDb": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.DYNAMODB),
            },
        )
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
        if interface_endpoints:
            self.endpoints_security_group = ec2.SecurityGroup(
                self,
                "EndpointsSecurityGroup",
                vpc=self.vpc,
                description="Interface endpoints",
                allow_all_outbound=False,
            )
            self.endpoints_security_group.add_ingress_rule(
                ec2.Peer.ipv4(VPC_CIDR), ec2.Port.tcp(443), "HTTPS from inside the VPC"
            )
            # Image pulls, log shipping and secret injection stay inside the VPC (and off the NAT bill).
            for name, service in {
                "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
                "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
                "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
                "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
            }.items():
                self.vpc.add_interface_endpoint(
                    name, service=service, security_groups=[self.endpoints_security_group], open=False
                )
