"""Agent egress in every stage (docs/egress.md): HTTPS to the internet where DNS Firewall lets
only the allowlisted names resolve; inside the VPC the control plane and the endpoints a task
needs to start, nothing else; gateway endpoints for this account's resources only."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from agents.registry import AGENTS
from constructs.network import VPC_CIDR

ENVS = ["dev", "staging", "prod"]


def fleet_groups(synth: Any, env: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    resources = synth.raw[env]["Fleet"]["Resources"]
    groups = {k: v["Properties"] for k, v in resources.items() if v["Type"] == "AWS::EC2::SecurityGroup"}
    ingress = [v["Properties"] for v in resources.values() if v["Type"] == "AWS::EC2::SecurityGroupIngress"]
    egress = [v["Properties"] for v in resources.values() if v["Type"] == "AWS::EC2::SecurityGroupEgress"]
    return groups, ingress, egress


def logical_id(groups: dict[str, Any], prefix: str) -> str:
    (found,) = [k for k in groups if k.startswith(prefix)]
    return found


def ref(logical: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical, "GroupId"]}


def imported(value: Any, name: str) -> bool:
    """Whether a value is the Network stack's export of the security group ``name``."""
    return "Fn::ImportValue" in value and f"Network{name}" in value["Fn::ImportValue"]


def domains(synth: Any, env: str, list_id: str) -> list[Any]:
    (found,) = [
        v["Properties"]["Domains"]
        for k, v in synth.raw[env]["Fleet"]["Resources"].items()
        if v["Type"] == "AWS::Route53Resolver::FirewallDomainList" and k.startswith(f"DnsFirewall{list_id}")
    ]
    return list(found)


@pytest.mark.parametrize("env", ENVS)
def test_agents_reach_https_outside_the_vpc_and_inside_only_the_control_plane_and_endpoints(synth, env):
    groups, _, egress = fleet_groups(synth, env)
    agent = logical_id(groups, "AgentSecurityGroup")
    inline = groups[agent]["SecurityGroupEgress"]
    assert {(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in inline} == {("tcp", 443, 443)}
    blocks = [ipaddress.ip_network(r["CidrIp"]) for r in inline]
    vpc = ipaddress.ip_network(VPC_CIDR)
    # every address outside the VPC, once, and none inside it: no longer "443 to 0.0.0.0/0"
    assert not any(block.overlaps(vpc) for block in blocks)
    assert sum(block.num_addresses for block in blocks) == 2**32 - vpc.num_addresses
    assert all(not a.overlaps(b) for i, a in enumerate(blocks) for b in blocks[i + 1 :])
    separate = [r for r in egress if r["GroupId"] == ref(agent)]
    to_control_plane = [
        r
        for r in separate
        if r["DestinationSecurityGroupId"] == ref(logical_id(groups, "ControlPlaneSecurityGroup"))
    ]
    assert [(r["FromPort"], r["ToPort"]) for r in to_control_plane] == [(8080, 8080)]  # claims, gateway
    to_endpoints = [
        r for r in separate if imported(r["DestinationSecurityGroupId"], "EndpointsSecurityGroup")
    ]
    has_endpoints = synth.stages[env].config.interface_endpoints
    assert [(r["FromPort"], r["ToPort"]) for r in to_endpoints] == ([(443, 443)] if has_endpoints else [])
    assert len(separate) == len(to_control_plane) + len(to_endpoints)  # and nothing else
    # the load balancer is in the VPC: the agents' rules reach neither its group nor its addresses
    assert not [
        r
        for r in separate
        if r["DestinationSecurityGroupId"] == ref(logical_id(groups, "ControlPlaneLoadBalancer"))
    ]


@pytest.mark.parametrize("env", ENVS)
def test_the_interface_endpoints_admit_named_groups_only(synth, env):
    network = synth.raw[env]["Network"]["Resources"]
    endpoint_groups = {
        k: v["Properties"]
        for k, v in network.items()
        if v["Type"] == "AWS::EC2::SecurityGroup" and "Endpoint" in k
    }
    has_endpoints = synth.stages[env].config.interface_endpoints
    assert len(endpoint_groups) == (2 if has_endpoints else 0)
    for group in endpoint_groups.values():
        assert "SecurityGroupIngress" not in group  # no CIDR at all: not "the whole VPC"
    assert not [v for v in network.values() if v["Type"] == "AWS::EC2::SecurityGroupIngress"]
    groups, ingress, _ = fleet_groups(synth, env)
    admitted: dict[str, set[str]] = {"EndpointsSecurityGroup": set(), "SecretsEndpointSecurityGroup": set()}
    for rule in ingress:
        for name in admitted:
            if imported(rule["GroupId"], name):
                assert (rule["FromPort"], rule["ToPort"]) == (443, 443)
                admitted[name].add(rule["SourceSecurityGroupId"]["Fn::GetAtt"][0])
    agent, control_plane = (
        logical_id(groups, "AgentSecurityGroup"),
        logical_id(groups, "ControlPlaneSecurityGroup"),
    )
    if has_endpoints:
        # ECR and logs: Fargate starts a task and ships its logs through the task's interface
        assert admitted["EndpointsSecurityGroup"] == {agent, control_plane}
        # no agent task reads a secret any more
        assert admitted["SecretsEndpointSecurityGroup"] == {control_plane}
        secrets_endpoint = [
            v["Properties"]
            for v in network.values()
            if v["Type"] == "AWS::EC2::VPCEndpoint"
            and "secretsmanager" in json.dumps(v["Properties"]["ServiceName"])
        ]
        (endpoint,) = secrets_endpoint
        (group,) = endpoint["SecurityGroupIds"]
        assert group["Fn::GetAtt"][0].startswith("NetworkSecretsEndpointSecurityGroup")
        interface = [
            v["Properties"]
            for v in network.values()
            if v["Type"] == "AWS::EC2::VPCEndpoint" and v["Properties"].get("VpcEndpointType") == "Interface"
        ]
        assert len(interface) == 4
        for endpoint in interface:  # this account's principals only
            (statement,) = endpoint["PolicyDocument"]["Statement"]
            assert statement["Condition"] == {
                "StringEquals": {"aws:PrincipalAccount": {"Ref": "AWS::AccountId"}}
            }
    else:
        assert admitted == {"EndpointsSecurityGroup": set(), "SecretsEndpointSecurityGroup": set()}


@pytest.mark.parametrize("env", ENVS)
def test_gateway_endpoints_carry_this_accounts_requests_only(synth, env):
    endpoints = {
        json.dumps(v["Properties"]["ServiceName"]): v["Properties"]
        for v in synth.raw[env]["Network"]["Resources"].values()
        if v["Type"] == "AWS::EC2::VPCEndpoint"
        and v["Properties"].get("VpcEndpointType", "Gateway") == "Gateway"
    }
    (s3,) = [p for name, p in endpoints.items() if ".s3" in name]
    (dynamodb,) = [p for name, p in endpoints.items() if ".dynamodb" in name]
    own, layers = s3["PolicyDocument"]["Statement"]
    assert own["Action"] == "s3:*" and own["Resource"] == "*"
    assert own["Condition"] == {"StringEquals": {"aws:ResourceAccount": {"Ref": "AWS::AccountId"}}}
    assert layers["Action"] == "s3:GetObject" and "-starport-layer-bucket/*" in json.dumps(layers["Resource"])
    (tables,) = dynamodb["PolicyDocument"]["Statement"]
    assert tables["Action"] == "dynamodb:*" and {"Ref": "AWS::AccountId"} in tables["Resource"]["Fn::Join"][1]
    assert tables["Resource"]["Fn::Join"][1][-1] == ":table/*"


@pytest.mark.parametrize("env", ENVS)
def test_dns_firewall_resolves_the_allowed_names_and_refuses_the_rest(synth, env):
    resources = synth.raw[env]["Fleet"]["Resources"]
    (group,) = [
        v["Properties"] for v in resources.values() if v["Type"] == "AWS::Route53Resolver::FirewallRuleGroup"
    ]
    allow, block = sorted(group["FirewallRules"], key=lambda rule: rule["Priority"])
    assert allow["Action"] == "ALLOW" and allow["FirewallDomainListId"]["Fn::GetAtt"][0].startswith(
        "DnsFirewallAllowed"
    )
    assert allow["FirewallDomainRedirectionAction"] == "TRUST_REDIRECTION_DOMAIN"
    assert block["Action"] == "BLOCK" and block["BlockResponse"] == "NXDOMAIN"
    assert block["FirewallDomainListId"]["Fn::GetAtt"][0].startswith("DnsFirewallEverything")
    assert domains(synth, env, "Everything") == ["*"]
    (association,) = [
        v["Properties"]
        for v in resources.values()
        if v["Type"] == "AWS::Route53Resolver::FirewallRuleGroupAssociation"
    ]
    assert "NetworkVpc" in association["VpcId"]["Fn::ImportValue"]  # the whole VPC: every task, every query
    listed = domains(synth, env, "Allowed")
    text = json.dumps(listed)
    allowed = {d for d in listed if isinstance(d, str)}  # the others name this account's resources
    config = synth.stages[env].config
    # what agents may reach: the environment's list and each deployed agent's additions
    assert set(config.egress_allowlist) <= set(allowed)
    assert {pattern for name in config.agents for pattern in AGENTS[name].egress} <= set(allowed)
    # what the control plane and Fargate resolve for them: the runners' control-plane name,
    # ECR, logs, the AWS APIs, the artifacts bucket, ECR's layers, the model APIs
    assert "*.outpost.internal" in allowed and "*.ec2.internal" in allowed
    for name in ("api.ecr.us-east-1.", ".dkr.ecr.us-east-1.", "logs.us-east-1.", "dynamodb.us-east-1.",
                 "sqs.us-east-1.", "ecs.us-east-1.", "secretsmanager.us-east-1.", "ArtifactsBucket",
                 "prod-us-east-1-starport-layer-bucket.s3.us-east-1."):  # fmt: skip
        assert name in text, name
    assert {"api.anthropic.com", "api.openai.com", "generativelanguage.googleapis.com", "api.x.ai"} <= set(
        allowed
    )
    # and nothing that opens everything: no bare wildcard, no AWS-wide or S3-wide name
    assert "*" not in allowed and not [
        d for d in allowed if isinstance(d, str) and d.startswith("*.amazonaws")
    ]
    assert "*.s3" not in text
    assert len(listed) == len({json.dumps(d) for d in listed})  # each once


@pytest.mark.parametrize("env", ENVS)
def test_the_control_plane_gets_the_allowlist_its_repository_check_uses(synth, env):
    (task,) = [
        t["Properties"]
        for k, t in synth.raw[env]["Fleet"]["Resources"].items()
        if t["Type"] == "AWS::ECS::TaskDefinition" and k.startswith("ControlPlane")
    ]
    (container,) = task["ContainerDefinitions"]
    (raw,) = [e["Value"] for e in container["Environment"] if e["Name"] == "OUTPOST_EGRESS_ALLOWLIST"]
    config = synth.stages[env].config
    assert json.loads(raw) == list(config.egress_allowlist)  # no github setting here: the list as is
    assert {"github.com", "registry.npmjs.org", "pypi.org"} <= set(json.loads(raw))
