"""Network stack: VPC layout, NAT per environment, flow logs, endpoints, closed default SG."""

import pytest
from aws_cdk.assertions import Match


@pytest.mark.parametrize(("env", "nats"), [("dev", 1), ("staging", 1), ("prod", 2)])
def test_vpc_spans_two_zones_with_nat_per_environment(synth, env, nats):
    template = synth.templates[env]["Network"]
    template.has_resource_properties("AWS::EC2::VPC", {"CidrBlock": "10.0.0.0/16"})
    subnets = synth.resources(env, "Network", "AWS::EC2::Subnet").values()
    public = [s for s in subnets if s["Properties"]["MapPublicIpOnLaunch"] is False and "public" in str(s)]
    assert len(subnets) == 4 and len(public) == 2
    zones = {str(s["Properties"]["AvailabilityZone"]) for s in subnets}
    assert len(zones) == 2 and all("Fn::GetAZs" in z for z in zones)  # no hard-coded zone names
    template.resource_count_is("AWS::EC2::NatGateway", nats)


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_flow_logs_aggregate_every_minute_into_encrypted_group(synth, env):
    template = synth.templates[env]["Network"]
    template.has_resource_properties(
        "AWS::EC2::FlowLog",
        {"MaxAggregationInterval": 60, "TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"},
    )
    retention = {"dev": 30, "staging": 30, "prod": 90}[env]
    template.has_resource_properties(
        "AWS::Logs::LogGroup", {"RetentionInDays": retention, "KmsKeyId": Match.any_value()}
    )
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_default_security_group_is_restricted(synth):
    synth.templates["dev"]["Network"].resource_count_is("Custom::VpcRestrictDefaultSG", 1)


@pytest.mark.parametrize(("env", "interface"), [("dev", True), ("staging", True), ("prod", True)])
def test_gateway_endpoints_always_interface_endpoints_per_config(synth, env, interface):
    endpoints = synth.resources(env, "Network", "AWS::EC2::VPCEndpoint").values()
    services = {str(e["Properties"]["ServiceName"]) for e in endpoints}
    gateway = [e for e in endpoints if e["Properties"].get("VpcEndpointType", "Gateway") == "Gateway"]
    assert {
        "s3" in s or "dynamodb" in s for s in map(str, (g["Properties"]["ServiceName"] for g in gateway))
    } == {True}
    assert len(gateway) == 2
    interfaces = [
        s for s in services if any(k in s for k in ("ecr.api", "ecr.dkr", ".logs", "secretsmanager"))
    ]
    assert len(interfaces) == (4 if interface else 0)
    # in as many zones as the stage has NAT gateways, each in a private subnet
    private = {k for k, v in synth.resources(env, "Network", "AWS::EC2::Subnet").items() if "private" in k}
    for endpoint in endpoints:
        if endpoint["Properties"].get("VpcEndpointType") == "Interface":
            subnets = [ref["Ref"] for ref in endpoint["Properties"]["SubnetIds"]]
            assert len(subnets) == synth.stages[env].config.nat_gateways and set(subnets) <= private
