"""IAM roles whose permissions live in one customer-managed policy, never an inline one."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_iam as iam

from constructs import Construct


def service_role(
    scope: Construct,
    id: str,
    *,
    service: str,
    statements: list[iam.PolicyStatement],
    managed_policies: Sequence[iam.IManagedPolicy] = (),
) -> iam.IRole:
    """A role for `service` with exactly `statements` (plus shared `managed_policies`).

    The role is returned without policy updates: grants made elsewhere (CDK adds them for
    images, logs and secrets) cannot widen it, so the statements here are the whole truth.
    """
    role = iam.Role(
        scope, id, assumed_by=iam.ServicePrincipal(service), managed_policies=list(managed_policies)
    )
    if statements:
        iam.ManagedPolicy(scope, f"{id}Policy", roles=[role], statements=statements)
    return role.without_policy_updates()


def execution_role(
    scope: Construct,
    *,
    repository_arn: str,
    log_group_arn: str,
    secret_arns: list[str],
    key_arns: list[str],
    ecr_auth_policy: iam.IManagedPolicy,
) -> iam.IRole:
    """An ECS execution role that can pull one image, write one log group and read its secrets."""
    statements = [
        iam.PolicyStatement(
            actions=["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            resources=[repository_arn],
        ),
        iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group_arn]),
    ]
    if secret_arns:
        statements.append(
            iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=secret_arns)
        )
        statements.append(iam.PolicyStatement(actions=["kms:Decrypt"], resources=key_arns))
    return service_role(
        scope,
        "ExecutionRole",
        service="ecs-tasks.amazonaws.com",
        statements=statements,
        managed_policies=[ecr_auth_policy],
    )
