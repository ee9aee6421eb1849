"""Network stack: the VPC and the key that encrypts the platform's log groups."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk

from constructs import Construct
from constructs.keys import customer_key
from constructs.network import Network
from stacks.config import AZ_COUNT, EnvironmentConfig
from stacks.policies import acknowledge, log_retention, removal_policy


class NetworkStack(cdk.Stack):
    def __init__(self, scope: Construct, id: str, *, config: EnvironmentConfig, **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        self.logs_key = customer_key(
            self,
            "LogsKey",
            description="Outpost CloudWatch log groups",
            removal_policy=removal_policy(config),
            service_principals=[f"logs.{self.region}.amazonaws.com"],
        )
        self.network = Network(
            self,
            "Network",
            availability_zones=self.availability_zones,
            nat_gateways=config.nat_gateways,
            nat=config.nat,
            interface_endpoints=config.interface_endpoints,
            log_retention=log_retention(config),
            logs_key=self.logs_key,
            removal_policy=removal_policy(config),
        )
        self.vpc = self.network.vpc
        self._acknowledge()

    @property
    def availability_zones(self) -> list[str]:
        # The region's first two zones, resolved by CloudFormation at deploy time: synth never
        # looks zones up in an account, and no zone name is hard-coded.
        return [cdk.Fn.select(i, cdk.Fn.get_azs()) for i in range(AZ_COUNT)]

    def _acknowledge(self) -> None:
        """Every cdk-nag finding this stack accepts, with the reason it is safe."""
        acknowledge(
            self.vpc,
            "NIST.800.53.R5-VPCNoUnrestrictedRouteToIGW",
            "Only the public subnets' default routes point at the internet gateway: they hold the load balancer "
            "and the NAT gateways; tasks run in private subnets and reach the internet only through NAT.",
        )
        for instance in self.network.nat_instances:
            for finding, reason in (
                (
                    "AwsSolutions-EC28",
                    "The NAT instance of a dev stage (nat: instance): basic monitoring suffices; detailed "
                    "monitoring would add its seven metrics to the bill the instance exists to cut.",
                ),
                (
                    "AwsSolutions-EC29",
                    "The NAT instance holds no state: a deploy or a new instance replaces it; the VPC's routes "
                    "follow the instance CDK creates.",
                ),
                (
                    "NIST.800.53.R5-EC2InstanceNoPublicIp",
                    "A NAT instance forwards the private subnets' traffic to the internet from its public address; "
                    "its security group admits HTTPS from the VPC only.",
                ),
                (
                    "NIST.800.53.R5-EC2InstancesInVPC",
                    "The instance is in the VPC's public subnet, named on its network interface (where a public "
                    "address must be asked for), not in the SubnetId property the rule reads.",
                ),
            ):
                acknowledge(instance, finding, reason)
