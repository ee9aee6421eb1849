"""Route 53 Resolver DNS Firewall on the VPC: the allowed names resolve, every other name does not.

A security group cannot name a host, and the hosts agents need (git hosts, package registries
behind CDNs) have no stable addresses; the VPC's resolver can refuse names. Every query from
the VPC passes through it, the ones security groups never see included (traffic to the VPC's
DNS server is not filtered by them), so a blocked name can neither be reached nor used to carry
data out in its labels. What this does not stop: a connection to a literal IP address, or a
resolver reached over HTTPS at one (docs/egress.md weighs that against the alternatives).

The rule group is associated with the whole VPC, so ``allowed_domains`` must hold what the
control plane and Fargate resolve too, not only what agents need.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_route53resolver as route53resolver

from constructs import Construct

ALLOW_PRIORITY = 100
BLOCK_PRIORITY = 200
# Where this rule group sits among a VPC's rule groups (100 and 9900 are kept for Firewall Manager).
ASSOCIATION_PRIORITY = 1000


class DnsFirewall(Construct):
    def __init__(self, scope: Construct, id: str, *, vpc: ec2.IVpc, allowed_domains: Sequence[str]) -> None:
        super().__init__(scope, id)
        allowed = route53resolver.CfnFirewallDomainList(self, "Allowed", domains=list(allowed_domains))
        everything = route53resolver.CfnFirewallDomainList(self, "Everything", domains=["*"])
        self.rule_group = route53resolver.CfnFirewallRuleGroup(
            self,
            "Rules",
            firewall_rules=[
                route53resolver.CfnFirewallRuleGroup.FirewallRuleProperty(
                    action="ALLOW",
                    priority=ALLOW_PRIORITY,
                    firewall_domain_list_id=allowed.attr_id,
                    # An allowed name may be a CNAME into a CDN's or AWS's own names, which nobody
                    # could list ahead: the chain of an allowed name is trusted.
                    firewall_domain_redirection_action="TRUST_REDIRECTION_DOMAIN",
                ),
                route53resolver.CfnFirewallRuleGroup.FirewallRuleProperty(
                    action="BLOCK",
                    priority=BLOCK_PRIORITY,
                    firewall_domain_list_id=everything.attr_id,
                    block_response="NXDOMAIN",  # "could not resolve host": the clearest failure
                ),
            ],
        )
        route53resolver.CfnFirewallRuleGroupAssociation(
            self,
            "Association",
            firewall_rule_group_id=self.rule_group.attr_id,
            vpc_id=vpc.vpc_id,
            priority=ASSOCIATION_PRIORITY,
        )
