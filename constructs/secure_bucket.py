"""An S3 bucket with every guard on: no public access, TLS only, versioned, logged, expiring."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3

from constructs import Construct

# The id of the request-metrics configuration: CloudWatch publishes the bucket's request metrics
# (4xx/5xx, latency, bytes) under the dimension FilterId with this value.
REQUEST_METRICS_ID = "EntireBucket"


class SecureBucket(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        encryption_key: kms.IKey | None,
        access_logs_bucket: s3.IBucket | None,
        access_logs_prefix: str = "",
        expire_after: Duration | None,
        removal_policy: RemovalPolicy,
        request_metrics: bool = False,
    ) -> None:
        super().__init__(scope, id)
        lifecycle = [
            s3.LifecycleRule(id="abort-uploads", abort_incomplete_multipart_upload_after=Duration.days(1))
        ]
        if expire_after is not None:
            lifecycle.append(
                s3.LifecycleRule(
                    id="expire", expiration=expire_after, noncurrent_version_expiration=Duration.days(7)
                )
            )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,
            # S3 server access logs can only be delivered to SSE-S3 buckets, hence the optional key.
            encryption=s3.BucketEncryption.KMS if encryption_key else s3.BucketEncryption.S3_MANAGED,
            encryption_key=encryption_key,
            bucket_key_enabled=encryption_key is not None,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_logs_bucket,
            server_access_logs_prefix=access_logs_prefix or None,
            lifecycle_rules=lifecycle,
            removal_policy=removal_policy,
            auto_delete_objects=False,
            metrics=[s3.BucketMetrics(id=REQUEST_METRICS_ID)] if request_metrics else None,
        )
