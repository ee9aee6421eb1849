"""One hardened Fargate task definition for one agent of the registry.

Agent code is untrusted. The task has no task role at all, the execution role can pull one
image and write one log group (and read no secret: provider keys stay with the control plane's
model gateway, which the agent reaches with a per-dispatch token), and the container runs
read-only, as a numeric non-root user, with every Linux capability dropped.

The writable workspace is task-local storage, not the shared EFS file system: every agent
task would reach EFS through the same access point as the same POSIX user, so a job could
read or alter another tenant's checkout while both run. Task storage is private to the task
and is destroyed with it, which is the one-job sandbox the platform promises.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs

from agents.registry import Agent
from constructs import Construct
from constructs.fargate_parts import logs_and_execution_role, without_capabilities, without_task_role
from constructs.workspaces import WORKSPACE_UID

CONTAINER_NAME = "agent"
WORKSPACE_MOUNT = "/workspace"
SCRATCH_MOUNT = "/tmp"  # noqa: S108 - a task-local volume, not the host's /tmp
STOP_TIMEOUT = Duration.seconds(120)


class AgentTask(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        agent: Agent,
        repository: ecr.IRepository,
        image_tag: str,
        ecr_auth_policy: iam.IManagedPolicy,
        log_retention: logs.RetentionDays,
        logs_key: kms.IKey,
        removal_policy: RemovalPolicy,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.log_group, self.execution_role = logs_and_execution_role(
            self,
            repository=repository,
            ecr_auth_policy=ecr_auth_policy,
            log_retention=log_retention,
            logs_key=logs_key,
            removal_policy=removal_policy,
        )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=agent.cpu,
            memory_limit_mib=agent.memory,
            runtime_platform=ecs.RuntimePlatform(
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
                cpu_architecture=ecs.CpuArchitecture.of(agent.architecture),
            ),
            execution_role=self.execution_role,
            ephemeral_storage_gib=agent.storage_gib,
            # Both volumes are task-local storage: private to this task, gone with it.
            volumes=[ecs.Volume(name="workspace"), ecs.Volume(name="scratch")],
        )
        without_task_role(self.task_definition)
        # No init process: the runner itself is PID 1. ECS's init would hold the container's
        # whole environment (the claim token, the control-plane URL) in a /proc/1/environ that
        # any process of the same uid, the agent included, can read; the runner makes itself
        # non-dumpable at start, so its own environ is closed to the agent. The runner already
        # reaps the job's orphans as a child subreaper and handles SIGTERM itself, and when it
        # exits the kernel ends whatever the job left behind (docs/design.md, "Credentials").
        linux = without_capabilities(self, init_process=False)
        container = self.task_definition.add_container(
            CONTAINER_NAME,
            image=ecs.ContainerImage.from_ecr_repository(repository, tag=image_tag),
            user=f"{WORKSPACE_UID}:{WORKSPACE_UID}",
            readonly_root_filesystem=True,
            privileged=False,
            linux_parameters=linux,
            stop_timeout=STOP_TIMEOUT,
            essential=True,
            logging=ecs.LogDrivers.aws_logs(stream_prefix=agent.name, log_group=self.log_group),
            # The agent's settings (model, provider endpoint, extra non-secret variables; checked
            # in agents/agent_settings.py). The claim token and the control-plane URL arrive per
            # task in RunTask overrides.
            environment=dict(environment) if environment else None,
        )
        container.add_mount_points(
            ecs.MountPoint(container_path=WORKSPACE_MOUNT, source_volume="workspace", read_only=False),
            ecs.MountPoint(container_path=SCRATCH_MOUNT, source_volume="scratch", read_only=False),
        )
