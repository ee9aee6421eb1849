"""CloudTrail with log-file validation into an encrypted bucket, mirrored to CloudWatch Logs."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3

from constructs import Construct
from constructs.secure_bucket import SecureBucket


class AuditTrail(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        encryption_key: kms.IKey,
        access_logs_bucket: s3.IBucket,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, id)
        self.bucket = SecureBucket(
            self,
            "Bucket",
            encryption_key=encryption_key,
            access_logs_bucket=access_logs_bucket,
            access_logs_prefix="cloudtrail/",
            expire_after=Duration.days(365),
            removal_policy=removal_policy,
        ).bucket
        log_group = logs.LogGroup(
            self,
            "LogGroup",
            retention=log_retention,
            encryption_key=encryption_key,
            removal_policy=removal_policy,
        )
        self.trail = cloudtrail.Trail(
            self,
            "Trail",
            bucket=self.bucket,
            encryption_key=encryption_key,
            enable_file_validation=True,
            include_global_service_events=True,
            is_multi_region_trail=True,
        )
        # Mirrored to CloudWatch Logs through a role of our own: the Trail construct's built-in
        # option would give that role an inline policy.
        logs_role = iam.Role(self, "LogsRole", assumed_by=iam.ServicePrincipal("cloudtrail.amazonaws.com"))
        logs_policy = iam.ManagedPolicy(
            self,
            "LogsPolicy",
            roles=[logs_role],
            statements=[
                iam.PolicyStatement(
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
                )
            ],
        )
        cfn_trail = self.trail.node.default_child
        assert isinstance(cfn_trail, cloudtrail.CfnTrail)
        cfn_trail.cloud_watch_logs_log_group_arn = log_group.log_group_arn
        cfn_trail.cloud_watch_logs_role_arn = logs_role.role_arn
        cfn_trail.node.add_dependency(logs_policy)
