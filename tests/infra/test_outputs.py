"""`make outputs ENV=...` (stacks/outputs.py) reads the deployed stage's stack outputs:
against CloudFormation in the emulator, over HTTP."""

import json

import boto3
import pytest

from stacks.outputs import main, stage_region

TEMPLATE = {
    "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
    "Outputs": {
        "ApiUrl": {"Value": "http://outpost-dev.elb.example", "Description": "The control plane's API"},
        "AdminSecretName": {"Value": "DataSecretsAdmin-abc", "Description": "The admin key"},
    },
}


@pytest.fixture
def cloudformation(moto_endpoint):
    return boto3.client("cloudformation", endpoint_url=moto_endpoint, region_name=stage_region("staging"))


def test_prints_each_deployed_stack_with_its_outputs(cloudformation, moto_endpoint, capsys):
    # the emulator is the session's: no other test deploys staging stacks into it
    cloudformation.create_stack(StackName="Staging-Fleet", TemplateBody=json.dumps(TEMPLATE))
    cloudformation.create_stack(
        StackName="Staging-Audit", TemplateBody=json.dumps({"Resources": TEMPLATE["Resources"]})
    )
    assert main(["--env", "staging", "--endpoint-url", moto_endpoint, "--descriptions"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Staging-Audit  (no outputs)",
        "Staging-Fleet",
        "  AdminSecretName  DataSecretsAdmin-abc",
        "                   (The admin key)",
        "  ApiUrl           http://outpost-dev.elb.example",
        "                   (The control plane's API)",
    ]


def test_a_stage_with_nothing_deployed_says_so(moto_endpoint, capsys):
    assert main(["--env", "prod", "--endpoint-url", moto_endpoint]) == 1
    assert capsys.readouterr().err == (
        "error: no stack of the prod stage is deployed in us-east-1 (README, Deploying)\n"
    )


def test_the_region_is_the_stages_own():
    assert stage_region("dev") == "us-east-1"
