"""Audit stack: the CloudTrail trail of the account's API activity."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3

from constructs import Construct
from constructs.audit_trail import AuditTrail
from constructs.keys import customer_key
from stacks.config import EnvironmentConfig
from stacks.policies import acknowledge, log_retention, removal_policy


class AuditStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: EnvironmentConfig,
        access_logs_bucket: s3.IBucket,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        key = customer_key(
            self,
            "TrailKey",
            description="Outpost CloudTrail",
            removal_policy=removal_policy(config),
            service_principals=["cloudtrail.amazonaws.com", f"logs.{self.region}.amazonaws.com"],
        )
        self.trail = AuditTrail(
            self,
            "Trail",
            encryption_key=key,
            access_logs_bucket=access_logs_bucket,
            log_retention=log_retention(config),
            removal_policy=removal_policy(config),
        )
        self._acknowledge()

    def _acknowledge(self) -> None:
        """Every cdk-nag finding this stack accepts, with the reason it is safe."""
        acknowledge(
            self.trail.bucket,
            "NIST.800.53.R5-S3BucketReplicationEnabled",
            "Trail files are versioned, validated by CloudTrail digests and mirrored to CloudWatch Logs; "
            "cross-region replication needs a second region, an operator's choice outside this stack.",
        )
