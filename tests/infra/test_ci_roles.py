"""The roles the GitHub workflows assume (stacks/ci.py): OIDC only, trust limited to one
repository (pull requests for the diff role, the stage's environment for the deploy role), and
nothing but the CDK bootstrap's roles and the stage's image repositories to act on."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest

from app import build_app
from stacks.config import CONTEXT_KEY, ConfigError, load_environments
from tests.infra.conftest import ROOT

REPOSITORY = "acme/outpost"
EXISTING_PROVIDER = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"


def context(**dev: Any) -> dict[str, Any]:
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    context[CONTEXT_KEY]["dev"].update(dev)
    return context


def synth_ci(tmp_path, **dev: Any) -> dict[str, Any]:
    app = cdk.App(outdir=str(tmp_path), context={**context(**dev), "env": "dev"})
    (stage,) = build_app(app)
    assembly = app.synth()  # raises if the security gate finds anything unacknowledged
    (ci,) = [s for s in assembly.get_nested_assembly("assembly-Dev").stacks if s.hierarchical_id == "Dev/Ci"]
    return ci.template


@pytest.fixture(scope="module")
def ci(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return synth_ci(tmp_path_factory.mktemp("cdk.out"), ci_repository=REPOSITORY)


def of_type(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in template["Resources"].items() if v["Type"] == type_}


def role(template: dict[str, Any], prefix: str) -> dict[str, Any]:
    (found,) = [props for key, props in of_type(template, "AWS::IAM::Role").items() if key.startswith(prefix)]
    return found


def policy_of(template: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """The statements of the role's one managed policy (no inline policies: the gate refuses them)."""
    assert of_type(template, "AWS::IAM::Policy") == {}
    (props,) = [
        p for key, p in of_type(template, "AWS::IAM::ManagedPolicy").items() if key.startswith(prefix)
    ]
    return props["PolicyDocument"]["Statement"]


def test_no_ci_stack_unless_a_repository_is_named(synth) -> None:
    for env in ("dev", "staging", "prod"):
        assert "Ci" not in synth.templates[env]


def test_the_oidc_provider_is_githubs_for_sts(ci: dict[str, Any]) -> None:
    (provider,) = of_type(ci, "AWS::IAM::OIDCProvider").values()
    assert provider["Url"] == "https://token.actions.githubusercontent.com"
    assert provider["ClientIdList"] == ["sts.amazonaws.com"]


@pytest.mark.parametrize(
    ("prefix", "subject"),
    [("DiffRole", f"repo:{REPOSITORY}:pull_request"), ("DeployRole", f"repo:{REPOSITORY}:environment:dev")],
)
def test_each_role_trusts_one_subject_of_one_repository(
    ci: dict[str, Any], prefix: str, subject: str
) -> None:
    props = role(ci, prefix)
    (statement,) = props["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert "Federated" in statement["Principal"] and "AWS" not in statement["Principal"]
    assert statement["Condition"] == {
        "StringEquals": {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": subject,
        }
    }
    assert props["MaxSessionDuration"] == 3600


def test_the_diff_role_may_only_assume_the_read_only_lookup_role(ci: dict[str, Any]) -> None:
    (statement,) = policy_of(ci, "DiffPolicy")
    assert statement["Action"] == "sts:AssumeRole"
    assert "cdk-hnb659fds-lookup-role-" in json.dumps(statement["Resource"])


def test_the_deploy_role_assumes_the_bootstrap_roles_and_pushes_to_the_stages_repositories(
    ci: dict[str, Any],
) -> None:
    statements = policy_of(ci, "DeployPolicy")
    assume = [s for s in statements if "sts:AssumeRole" in s["Action"]]
    (assume_statement,) = assume
    arns = json.dumps(assume_statement["Resource"])
    for kind in ("deploy", "file-publishing", "image-publishing", "lookup"):
        assert f"cdk-hnb659fds-{kind}-role-" in arns
    pushes = [s for s in statements if "ecr:PutImage" in s["Action"]]
    (push,) = pushes
    assert len(push["Resource"]) == 7  # the seven repositories of the Registry stack, no wildcard
    (describe,) = [s for s in statements if s["Action"] == "cloudformation:DescribeStackResources"]
    assert ":stack/Dev-Registry/*" in json.dumps(describe["Resource"])  # publish-images.sh reads it
    everything = [s for s in statements if s["Resource"] == "*"]
    assert [s["Action"] for s in everything] == ["ecr:GetAuthorizationToken"]  # has no resource-level form


def test_an_existing_provider_is_used_instead_of_a_new_one(tmp_path) -> None:
    template = synth_ci(tmp_path, ci_repository=REPOSITORY, ci_oidc_provider_arn=EXISTING_PROVIDER)
    assert of_type(template, "AWS::IAM::OIDCProvider") == {}
    (statement,) = role(template, "DeployRole")["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"]["Federated"] == EXISTING_PROVIDER


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("ci_repository", "acme", "a GitHub repository as owner/name"),
        ("ci_repository", "acme/outpost:pull_request", "a GitHub repository as owner/name"),
        ("ci_oidc_provider_arn", "arn:aws:iam::123456789012:oidc-provider/example.com", "provider"),
    ],
)
def test_bad_ci_settings_are_refused(setting: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_environments(context(**{setting: value})[CONTEXT_KEY], selected="dev")
