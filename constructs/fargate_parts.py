"""The parts every Outpost Fargate task and service is built from, hardened the same way: the
agents' task definitions, the control plane's service and the egress proxy's service."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs

from constructs import Construct
from constructs.service_role import execution_role


def logs_and_execution_role(
    scope: Construct,
    *,
    repository: ecr.IRepository,
    ecr_auth_policy: iam.IManagedPolicy,
    log_retention: logs.RetentionDays,
    logs_key: kms.IKey,
    removal_policy: RemovalPolicy,
    secret_arns: Sequence[str] = (),
    key_arns: Sequence[str] = (),
) -> tuple[logs.LogGroup, iam.IRole]:
    """The task's encrypted log group ("Logs") and an execution role ("ExecutionRole") that
    can pull its one image, write that log group and read ``secret_arns``, nothing else."""
    log_group = logs.LogGroup(
        scope, "Logs", retention=log_retention, encryption_key=logs_key, removal_policy=removal_policy
    )
    role = execution_role(
        scope,
        repository_arn=repository.repository_arn,
        log_group_arn=log_group.log_group_arn,
        secret_arns=list(secret_arns),
        key_arns=list(key_arns),
        ecr_auth_policy=ecr_auth_policy,
    )
    return log_group, role


def without_task_role(task_definition: ecs.TaskDefinition) -> None:
    """A task role, even one without a policy, gives every process in the task a credential
    endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI at 169.254.170.2), which Fargate cannot
    block. CDK creates an empty role when none is given; this removes it and the reference.

    The role construct is emptied as well as detached: a service made from the task definition
    depends on it, and a dependency renders as DependsOn on whatever resources it still holds."""
    role = task_definition.node.try_find_child("TaskRole")
    assert role is not None, "CDK no longer creates the default task role: review this function"
    role.node.try_remove_child("Resource")
    task_definition.node.try_remove_child("TaskRole")
    cfn = task_definition.node.default_child
    assert isinstance(cfn, ecs.CfnTaskDefinition)
    cfn.add_property_deletion_override("TaskRoleArn")


def without_capabilities(scope: Construct, *, init_process: bool) -> ecs.LinuxParameters:
    """Linux parameters ("Linux") that drop every capability."""
    linux = ecs.LinuxParameters(scope, "Linux", init_process_enabled=init_process)
    linux.drop_capabilities(ecs.Capability.ALL)
    return linux


def http_health_check(port: int, path: str, *, start_period_s: int) -> ecs.HealthCheck:
    """The container checks itself with the interpreter it already has (no curl in the image)."""
    command = f"python -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=3)\""
    return ecs.HealthCheck(
        command=["CMD-SHELL", command],
        interval=Duration.seconds(15),
        timeout=Duration.seconds(5),
        retries=3,
        start_period=Duration.seconds(start_period_s),
    )


def private_service(
    scope: Construct,
    *,
    cluster: ecs.ICluster,
    task_definition: ecs.FargateTaskDefinition,
    desired_count: int,
    security_group: ec2.ISecurityGroup,
    cloud_map_name: str,
) -> ecs.FargateService:
    """A service ("Service") in the private subnets without public addresses or ECS Exec,
    rolled back by the circuit breaker, never below its count while it deploys, and named in
    the cluster's Cloud Map namespace."""
    return ecs.FargateService(
        scope,
        "Service",
        cluster=cluster,
        task_definition=task_definition,
        desired_count=desired_count,
        security_groups=[security_group],
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        assign_public_ip=False,
        circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
        enable_execute_command=False,
        min_healthy_percent=100,
        max_healthy_percent=200,
        cloud_map_options=ecs.CloudMapOptions(name=cloud_map_name),
    )
