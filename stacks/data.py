"""Data stack, the stateful core: tables, buckets, workspaces, queues, secrets, backups."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_backup as backup
from aws_cdk import aws_ec2 as ec2

from constructs import Construct
from constructs.backups import Backups
from constructs.keys import customer_key
from constructs.provider_secrets import ProviderSecrets
from constructs.secure_bucket import SecureBucket
from constructs.tables import SchemaTable
from constructs.work_queue import WorkQueue, dead_letter_queue
from constructs.workspaces import Workspaces
from control_plane.schema import TABLES
from stacks.config import EnvironmentConfig
from stacks.policies import acknowledge, removal_policy

ARTIFACT_RETENTION_DAYS = 30


class DataStack(cdk.Stack):
    def __init__(
        self, scope: Construct, id: str, *, config: EnvironmentConfig, vpc: ec2.IVpc, **kwargs: object
    ) -> None:
        super().__init__(scope, id, **kwargs)
        removal = removal_policy(config)
        self.key = customer_key(self, "DataKey", description="Outpost data at rest", removal_policy=removal)

        self.tables = {
            schema.id: SchemaTable(
                self,
                schema.id,
                schema=schema,
                encryption_key=self.key if config.customer_managed_table_key else None,
                removal_policy=removal,
            ).table
            for schema in TABLES
        }

        self.access_logs = SecureBucket(
            self, "AccessLogs", encryption_key=None, access_logs_bucket=None,
            expire_after=cdk.Duration.days(365), removal_policy=removal,
        )  # fmt: skip
        self.artifacts_bucket = SecureBucket(
            self,
            "Artifacts",
            encryption_key=self.key,
            access_logs_bucket=self.access_logs.bucket,
            access_logs_prefix="artifacts/",
            expire_after=cdk.Duration.days(ARTIFACT_RETENTION_DAYS),
            removal_policy=removal,
        ).bucket

        self.workspaces = Workspaces(
            self, "Workspaces", vpc=vpc, encryption_key=self.key, removal_policy=removal
        )

        self.dead_letter_queue = dead_letter_queue(
            self, "DeadLetterQueue", encryption_key=self.key, removal_policy=removal
        )
        # One queue per agent: a runner claims only work its image can do.
        self.dispatch_queues = {
            agent: WorkQueue(
                self,
                f"DispatchQueue{agent.capitalize()}",
                encryption_key=self.key,
                dead_letter_queue=self.dead_letter_queue,
                removal_policy=removal,
            ).queue
            for agent in config.agents
        }
        self.task_events_queue = WorkQueue(
            self, "TaskEventsQueue", encryption_key=self.key, dead_letter_queue=self.dead_letter_queue,
            removal_policy=removal,
        ).queue  # fmt: skip

        self.secrets = ProviderSecrets(self, "Secrets", encryption_key=self.key, removal_policy=removal)

        self.backups = Backups(
            self,
            "Backups",
            resources=[
                *(backup.BackupResource.from_dynamo_db_table(table) for table in self.tables.values()),
                backup.BackupResource.from_efs_file_system(self.workspaces.file_system),
            ],
            encryption_key=self.key,
            removal_policy=removal,
        )
        self._acknowledge()

    def _acknowledge(self) -> None:
        """Every cdk-nag finding this stack accepts, with the reason it is safe."""
        for finding in ("AwsSolutions-SMG4", "NIST.800.53.R5-SecretsManagerRotationEnabled"):
            acknowledge(
                self.secrets,
                finding,
                "Provider API keys and the GitHub token are issued by those services and rotated there by an "
                "operator; the admin key is rotated with `outpost admin rotate`. No rotation Lambda could do either.",
            )
        acknowledge(
            self.backups,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup]",
            "AWS Backup's own service-role policy is the documented minimum for backing up DynamoDB and EFS; "
            "the role can be assumed only by backup.amazonaws.com.",
        )
        for bucket in (self.access_logs.bucket, self.artifacts_bucket):
            acknowledge(
                bucket,
                "NIST.800.53.R5-S3BucketReplicationEnabled",
                "Versioning keeps every overwritten or deleted object recoverable; cross-region "
                "replication needs a second region, an operator's choice outside this stack.",
            )
        acknowledge(
            self.access_logs.bucket,
            "NIST.800.53.R5-S3DefaultEncryptionKMS",
            "S3 server access logs can only be delivered to a bucket encrypted with SSE-S3, which this one is.",
        )
