"""The encrypted EFS file system, reached only through a non-root access point.

Agent workspaces are task-local storage, not this file system (README, "Why agent workspaces
are not on EFS"); it is kept for platform-written shared data such as a git mirror cache.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_efs as efs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms

from constructs import Construct

# The numeric user every agent container runs as (agents/images/base/Dockerfile).
WORKSPACE_UID = 10001
WORKSPACE_PATH = "/workspaces"


class Workspaces(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        encryption_key: kms.IKey,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, id)
        # No ingress rule: nothing mounts the file system yet. Its mount targets admit only the
        # groups given NFS (2049) ingress here, so every client is refused until a mount is
        # wired in deliberately.
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, description="Workspaces EFS", allow_all_outbound=False
        )
        self.file_system = efs.FileSystem(
            self,
            "FileSystem",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_group=self.security_group,
            encrypted=True,
            kms_key=encryption_key,
            performance_mode=efs.PerformanceMode.GENERAL_PURPOSE,
            throughput_mode=efs.ThroughputMode.ELASTIC,
            lifecycle_policy=efs.LifecyclePolicy.AFTER_14_DAYS,
            enable_automatic_backups=False,  # the data stack's backup plan covers it
            allow_anonymous_access=False,
            removal_policy=removal_policy,
        )
        self.access_point = self.file_system.add_access_point(
            "AccessPoint",
            path=WORKSPACE_PATH,
            posix_user=efs.PosixUser(uid=str(WORKSPACE_UID), gid=str(WORKSPACE_UID)),
            create_acl=efs.Acl(owner_uid=str(WORKSPACE_UID), owner_gid=str(WORKSPACE_UID), permissions="750"),
        )
        self.access_point.apply_removal_policy(removal_policy)
        # Only TLS clients, and only through an access point. (A file-system policy applies to
        # its own file system, so the statements name no resource.)
        for condition in (
            {"Bool": {"aws:SecureTransport": "false"}},
            {"Null": {"elasticfilesystem:AccessPointArn": "true"}},
        ):
            self.file_system.add_to_resource_policy(
                iam.PolicyStatement(
                    effect=iam.Effect.DENY,
                    principals=[iam.AnyPrincipal()],
                    actions=[
                        "elasticfilesystem:ClientMount",
                        "elasticfilesystem:ClientWrite",
                        "elasticfilesystem:ClientRootAccess",
                    ],
                    conditions=condition,
                )
            )
