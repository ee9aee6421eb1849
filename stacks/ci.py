"""The roles Outpost's GitHub workflows assume in a stage's account (.github/workflows), through
GitHub's OpenID Connect tokens: no long-lived AWS key exists anywhere.

A stage gets this stack when ``ci_repository`` ("owner/name") is set in cdk.json. It is deployed
once, by an administrator, before the workflows can run (``cdk deploy "Dev/Ci"``), like
``cdk bootstrap``; later deploys by the workflow leave it alone (they deploy the other stacks).

- ``DiffRole``: for pull requests of that repository only (``sub`` =
  ``repo:<owner/name>:pull_request``). It may only assume the CDK bootstrap's lookup role, which
  is read-only, so `make diff` can read the deployed templates.
- ``DeployRole``: for workflow jobs that run in the stage's GitHub environment only (``sub`` =
  ``repo:<owner/name>:environment:<env>``, so the environment's protection rules, such as a
  required approval, guard it). It may assume the CDK bootstrap's deploy, publishing and lookup
  roles of this account and region (CloudFormation then deploys with the bootstrap's execution
  role), and push images to this stage's seven repositories.

Both trust only tokens issued for AWS (``aud`` = ``sts.amazonaws.com``) and last one hour at most.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam

from constructs import Construct
from stacks.config import EnvironmentConfig
from stacks.policies import acknowledge

GITHUB_OIDC_URL = "https://token.actions.githubusercontent.com"
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
# The CDK bootstrap's roles (`cdk bootstrap` with the default qualifier): cdk-hnb659fds-<kind>-role-<account>-<region>.
BOOTSTRAP_QUALIFIER = "hnb659fds"
DEPLOY_ROLES = ("deploy", "file-publishing", "image-publishing", "lookup")
ECR_PUSH = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
    "ecr:BatchGetImage",
]


def bootstrap_role_arn(kind: str) -> str:
    name = f"cdk-{BOOTSTRAP_QUALIFIER}-{kind}-role-{cdk.Aws.ACCOUNT_ID}-{cdk.Aws.REGION}"
    return f"arn:{cdk.Aws.PARTITION}:iam::{cdk.Aws.ACCOUNT_ID}:role/{name}"


class CiStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        repositories: dict[str, ecr.Repository],
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        assert config.ci_repository is not None
        if config.ci_oidc_provider_arn is not None:
            provider_arn = config.ci_oidc_provider_arn
        else:
            provider = iam.OidcProviderNative(
                self, "GitHubOidcProvider", url=GITHUB_OIDC_URL, client_ids=["sts.amazonaws.com"]
            )
            provider_arn = provider.oidc_provider_arn
        repository = config.ci_repository

        def trusting(subject: str) -> iam.IPrincipal:
            return iam.WebIdentityPrincipal(
                provider_arn,
                conditions={
                    "StringEquals": {
                        f"{GITHUB_OIDC_HOST}:aud": "sts.amazonaws.com",
                        f"{GITHUB_OIDC_HOST}:sub": subject,
                    }
                },
            )

        # Managed, not inline, policies: each role's permissions are one named document.
        self.diff_role = iam.Role(
            self,
            "DiffRole",
            assumed_by=trusting(f"repo:{repository}:pull_request"),
            description=f"Outpost {config.stage_name}: make diff in pull requests of {repository} (read-only)",
            max_session_duration=cdk.Duration.hours(1),
            managed_policies=[
                iam.ManagedPolicy(
                    self,
                    "DiffPolicy",
                    statements=[
                        iam.PolicyStatement(
                            actions=["sts:AssumeRole"], resources=[bootstrap_role_arn("lookup")]
                        )
                    ],
                )
            ],
        )
        repository_arns = [image_repository.repository_arn for image_repository in repositories.values()]
        self.deploy_policy = iam.ManagedPolicy(
            self,
            "DeployPolicy",
            statements=[
                iam.PolicyStatement(
                    actions=["sts:AssumeRole", "sts:TagSession"],
                    resources=[bootstrap_role_arn(kind) for kind in DEPLOY_ROLES],
                ),
                # agents/images/scripts/publish-images.sh: find this stage's repositories in its
                # registry stack, and push to them only
                iam.PolicyStatement(
                    actions=["cloudformation:DescribeStackResources"],
                    resources=[
                        f"arn:{cdk.Aws.PARTITION}:cloudformation:{cdk.Aws.REGION}:{cdk.Aws.ACCOUNT_ID}:"
                        f"stack/{config.stage_name}-Registry/*"
                    ],
                ),
                iam.PolicyStatement(actions=[*ECR_PUSH, "ecr:DescribeImages"], resources=repository_arns),
                iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]),
            ],
        )
        self.deploy_role = iam.Role(
            self,
            "DeployRole",
            assumed_by=trusting(f"repo:{repository}:environment:{config.name}"),
            description=f"Outpost {config.stage_name}: deploys from {repository}, environment {config.name}",
            max_session_duration=cdk.Duration.hours(1),
            managed_policies=[self.deploy_policy],
        )
        acknowledge(
            self.deploy_policy,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:cloudformation:<AWS::Region>:<AWS::AccountId>:"
            f"stack/{config.stage_name}-Registry/*]",
            "A stack's ARN ends in the id CloudFormation generates for it; the wildcard matches only the "
            "ids of this stage's one Registry stack, which publish-images.sh reads.",
        )
        acknowledge(
            self.deploy_policy,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource-level permissions; the token pushes only to the seven "
            "repositories of this stage that the policy's other statement names.",
        )

        cdk.CfnOutput(self, "DiffRoleArn", value=self.diff_role.role_arn, description="OUTPOST_DIFF_ROLE_ARN")
        cdk.CfnOutput(
            self, "DeployRoleArn", value=self.deploy_role.role_arn, description="OUTPOST_DEPLOY_ROLE_ARN"
        )
