"""Agent egress in every stage (docs/egress.md): the internet only through the egress proxy,
each agent on its own listener with its own list; inside the VPC the control plane and the
endpoints a task needs to start, nothing else; DNS Firewall resolving only the allowlisted
names; gateway endpoints for this account's resources only. And the lean profile without the
proxy: HTTPS outside the VPC, filtered by DNS Firewall alone."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from agents.egress import PROXY_VARIABLES
from agents.registry import AGENTS
from constructs.network import VPC_CIDR
from stacks.egress import agent_allowlist, proxy_port

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


def agent_groups(groups: dict[str, Any], agents: Any) -> dict[str, str]:
    """Each deployed agent's own security group (logical id), and no other agent group."""
    found = {name: logical_id(groups, f"AgentSecurityGroup{name.capitalize()}") for name in agents}
    assert sorted(found.values()) == sorted(k for k in groups if k.startswith("AgentSecurityGroup"))
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


def separate_rules(resources: dict[str, Any], type_: str, group: str) -> list[dict[str, Any]]:
    return [
        v["Properties"]
        for v in resources.values()
        if v["Type"] == type_ and v["Properties"]["GroupId"] == ref(group)
    ]


def covers_exactly_outside_the_vpc(rules: list[dict[str, Any]]) -> bool:
    """443 to every address outside the VPC, once each, and to none inside it."""
    blocks = [ipaddress.ip_network(r["CidrIp"]) for r in rules]
    vpc = ipaddress.ip_network(VPC_CIDR)
    return (
        {(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in rules} == {("tcp", 443, 443)}
        and not any(block.overlaps(vpc) for block in blocks)
        and sum(block.num_addresses for block in blocks) == 2**32 - vpc.num_addresses
        and all(not a.overlaps(b) for i, a in enumerate(blocks) for b in blocks[i + 1 :])
    )


@pytest.mark.parametrize("env", ENVS)
def test_each_agent_reaches_only_its_own_listener_s3_the_control_plane_and_the_endpoints(synth, env):
    """No internet rule at all: no address outside the VPC is reachable directly, so neither a
    literal address nor an unlisted name gets out except through the proxy; and each agent's
    group reaches its own listener only, so no agent's task can use another agent's allowlist."""
    resources = synth.raw[env]["Fleet"]["Resources"]
    groups, _, _ = fleet_groups(synth, env)
    proxy = logical_id(groups, "EgressProxySecurityGroup")
    config = synth.stages[env].config
    for name, agent in agent_groups(groups, config.agents).items():
        assert "SecurityGroupEgress" not in groups[agent]  # no CIDR rule of any kind
        rules = separate_rules(resources, "AWS::EC2::SecurityGroupEgress", agent)
        reached = sorted(
            (
                "proxy" if r.get("DestinationSecurityGroupId") == ref(proxy)
                else "control plane" if r.get("DestinationSecurityGroupId") == ref(logical_id(groups, "ControlPlaneSecurityGroup"))
                else "endpoints" if imported(r.get("DestinationSecurityGroupId", {}), "EndpointsSecurityGroup")
                else f"prefix list {r['DestinationPrefixListId']}" if "DestinationPrefixListId" in r
                else json.dumps(r),
                r["FromPort"],
                r["ToPort"],
            )
            for r in rules
        )  # fmt: skip
        port = proxy_port(name)
        assert reached == sorted(
            [
                ("control plane", 8080, 8080),
                ("endpoints", 443, 443),
                ("prefix list pl-63a5400a", 443, 443),
                ("proxy", port, port),
            ]
        ), name


@pytest.mark.parametrize("env", ENVS)
def test_the_proxy_admits_each_agent_on_its_own_port_and_reaches_only_https_outside_the_vpc(synth, env):
    resources = synth.raw[env]["Fleet"]["Resources"]
    groups, _, _ = fleet_groups(synth, env)
    proxy = logical_id(groups, "EgressProxySecurityGroup")
    ingress = separate_rules(resources, "AWS::EC2::SecurityGroupIngress", proxy)
    config = synth.stages[env].config
    assert len(config.agents) > 1  # else one group for all would pass too
    own = agent_groups(groups, config.agents)
    # each listener port admits exactly one group, its agent's
    assert sorted((r["FromPort"], r["ToPort"], r["SourceSecurityGroupId"]) for r in ingress) == sorted(
        (proxy_port(name), proxy_port(name), ref(own[name])) for name in config.agents
    )
    assert "SecurityGroupIngress" not in groups[proxy]
    assert covers_exactly_outside_the_vpc(groups[proxy]["SecurityGroupEgress"])
    (to_endpoints,) = separate_rules(resources, "AWS::EC2::SecurityGroupEgress", proxy)
    assert imported(to_endpoints["DestinationSecurityGroupId"], "EndpointsSecurityGroup")
    assert (to_endpoints["FromPort"], to_endpoints["ToPort"]) == (443, 443)


def resolved(value: Any) -> Any:
    """A synthesized JSON string (Fn::Join of text, Refs and GetAtts), each reference replaced by
    the logical id of the resource it names."""
    if isinstance(value, str):
        return json.loads(value)
    (separator, parts) = value["Fn::Join"]
    return json.loads(
        separator.join(
            part if isinstance(part, str) else part["Ref"] if "Ref" in part else part["Fn::GetAtt"][0]
            for part in parts
        )
    )


def control_plane_environment(resources: dict[str, Any]) -> dict[str, Any]:
    (container,) = [
        v["Properties"]["ContainerDefinitions"][0]
        for k, v in resources.items()
        if v["Type"] == "AWS::ECS::TaskDefinition" and k.startswith("ControlPlane")
    ]
    return {e["Name"]: e["Value"] for e in container["Environment"]}


@pytest.mark.parametrize("env", ENVS)
def test_the_control_plane_starts_each_agents_tasks_in_that_agents_group(synth, env):
    """OUTPOST_AGENT_SECURITY_GROUPS: the RunTask networkConfiguration of each agent (the
    engine's side: tests/engine/test_ecs_emulator.py)."""
    environment = control_plane_environment(synth.raw[env]["Fleet"]["Resources"])
    assert "OUTPOST_AGENT_SECURITY_GROUP" not in environment  # no group shared by every agent
    groups, _, _ = fleet_groups(synth, env)
    config = synth.stages[env].config
    assert resolved(environment["OUTPOST_AGENT_SECURITY_GROUPS"]) == agent_groups(groups, config.agents)
    assert set(resolved(environment["OUTPOST_TASK_DEFINITIONS"])) == set(config.agents)


@pytest.mark.parametrize("env", ENVS)
def test_the_proxy_task_enforces_each_agents_list_and_has_no_task_role(synth, env):
    resources = synth.raw[env]["Fleet"]["Resources"]
    ((logical, task),) = [
        (k, v["Properties"])
        for k, v in resources.items()
        if v["Type"] == "AWS::ECS::TaskDefinition" and k.startswith("EgressProxy")
    ]
    assert "TaskRoleArn" not in task  # no credential endpoint for what parses agents' requests
    roles = [k for k, v in resources.items() if v["Type"] == "AWS::IAM::Role" and k.startswith("EgressProxy")]
    assert roles == [task["ExecutionRoleArn"]["Fn::GetAtt"][0]]
    (container,) = task["ContainerDefinitions"]
    assert container["Command"] == ["python", "-m", "control_plane.egress_proxy"]
    assert container["ReadonlyRootFilesystem"] is True and container["User"] == "10001:10001"
    assert container["LinuxParameters"]["Capabilities"] == {"Drop": ["ALL"]}
    assert "Secrets" not in container
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    config = synth.stages[env].config
    assert json.loads(environment["OUTPOST_EGRESS_PROXY_LISTENERS"]) == {
        str(proxy_port(name)): {"agent": name, "hosts": list(agent_allowlist(config, name))}
        for name in config.agents
    }
    assert json.loads(environment["OUTPOST_EGRESS_PROXY_DENIED_NETWORKS"]) == [VPC_CIDR]
    # aider's own additions are on aider's listener only
    listeners = json.loads(environment["OUTPOST_EGRESS_PROXY_LISTENERS"])
    assert set(AGENTS["aider"].egress) <= set(listeners[str(proxy_port("aider"))]["hosts"])
    (service,) = [
        v["Properties"]
        for v in resources.values()
        if v["Type"] == "AWS::ECS::Service" and v["Properties"]["TaskDefinition"] == {"Ref": logical}
    ]
    assert service["DesiredCount"] == config.nat_gateways
    assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_each_agent_sends_https_to_its_own_listener_and_bypasses_it_for_the_vpc_and_s3(synth, env, agent):
    resources = synth.raw[env]["Fleet"]["Resources"]
    ((container,),) = [
        v["Properties"]["ContainerDefinitions"]
        for k, v in resources.items()
        if v["Type"] == "AWS::ECS::TaskDefinition" and k.startswith(f"Agent{agent.capitalize()}")
    ]
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    url = f"http://egress.outpost.internal:{proxy_port(agent)}"
    assert (environment["HTTPS_PROXY"], environment["https_proxy"]) == (url, url)
    assert (
        environment["NO_PROXY"]
        == environment["no_proxy"]
        == "outpost.internal,.outpost.internal,s3.us-east-1.amazonaws.com,.s3.us-east-1.amazonaws.com,s3.amazonaws.com,.s3.amazonaws.com"
    )
    assert "HTTP_PROXY" not in environment  # the control plane is plain HTTP inside the VPC


def test_without_the_proxy_agents_reach_https_outside_the_vpc_where_dns_firewall_filters(lean):
    """The lean dev profile (egress_proxy off): DNS Firewall alone, the VPC still closed."""
    (template,) = [json.loads(p.read_text()) for p in lean.glob("*Fleet*.template.json")]
    resources = template["Resources"]
    groups = {k: v["Properties"] for k, v in resources.items() if v["Type"] == "AWS::EC2::SecurityGroup"}
    assert not [k for k in resources if k.startswith("EgressProxy")]
    environment = control_plane_environment(resources)
    agents = resolved(environment["OUTPOST_TASK_DEFINITIONS"])
    own = agent_groups(groups, agents)
    assert len(own) > 1 and resolved(environment["OUTPOST_AGENT_SECURITY_GROUPS"]) == own
    for agent in own.values():
        assert covers_exactly_outside_the_vpc(groups[agent]["SecurityGroupEgress"])
        rules = separate_rules(resources, "AWS::EC2::SecurityGroupEgress", agent)
        assert [(r["DestinationSecurityGroupId"], r["FromPort"]) for r in rules] == [
            (ref(logical_id(groups, "ControlPlaneSecurityGroup")), 8080)
        ]
    for task in [
        v["Properties"]
        for k, v in resources.items()
        if k.startswith("Agent") and v["Type"] == "AWS::ECS::TaskDefinition"
    ]:
        assert not set(PROXY_VARIABLES) & {
            e["Name"] for e in task["ContainerDefinitions"][0].get("Environment", [])
        }


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
    agents = set(agent_groups(groups, synth.stages[env].config.agents).values())
    control_plane = logical_id(groups, "ControlPlaneSecurityGroup")
    if has_endpoints:
        # ECR and logs: Fargate starts a task and ships its logs through the task's interface
        proxy = logical_id(groups, "EgressProxySecurityGroup")
        assert admitted["EndpointsSecurityGroup"] == {*agents, control_plane, proxy}
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
