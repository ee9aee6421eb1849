"""Data stack, the stateful core: tables, buckets, workspaces, queues, secrets, backups."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_backup as backup
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam

from agents.registry import AGENTS, PROVIDER_KEY_ENV, PROVIDER_SECRETS
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
ARTIFACT_PREFIX = "tenants/"  # then {tenant_id}/dispatches/{dispatch_id}/attempt-{n}/ (docs/design.md)


class DataStack(cdk.Stack):
    def __init__(
        self, scope: Construct, id: str, *, config: EnvironmentConfig, vpc: ec2.IVpc, **kwargs: Any
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
            request_metrics=True,  # the observability stack alarms on its 4xx/5xx
        ).bucket

        # The control plane signs artifact URLs; this policy is its whole access to the bucket.
        self.artifacts_policy = iam.ManagedPolicy(
            self,
            "ArtifactsAccess",
            statements=[
                iam.PolicyStatement(
                    actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    resources=[self.artifacts_bucket.arn_for_objects(f"{ARTIFACT_PREFIX}*")],
                ),
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[self.artifacts_bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{ARTIFACT_PREFIX}*"]}},
                ),
                iam.PolicyStatement(
                    actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
                    resources=[self.key.key_arn],
                ),
            ],
        )

        self.workspaces = Workspaces(
            self,
            "Workspaces",
            vpc=vpc,
            encryption_key=self.key,
            removal_policy=removal,
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

        self._admit_task_events(config.task_events_rule_name)

        self.secrets = ProviderSecrets(self, "Secrets", encryption_key=self.key, removal_policy=removal)
        self._secret_outputs()

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

    def _secret_outputs(self) -> None:
        """The generated secret names an operator needs (README, Deploying): the admin key to
        read, the provider keys to store."""
        admin = self.secrets.secrets["admin"].secret_name
        cdk.CfnOutput(
            self,
            "AdminSecretName",
            value=admin,
            description="The admin key (OUTPOST_ADMIN_KEY): aws secretsmanager get-secret-value "
            "--secret-id <this name> --query SecretString --output text",
        )
        for provider in PROVIDER_SECRETS:
            agents = ", ".join(name for name, agent in AGENTS.items() if agent.secret == provider)
            cdk.CfnOutput(
                self,
                f"{provider.capitalize()}SecretName",
                value=self.secrets.secrets[provider].secret_name,
                description=f"The {PROVIDER_KEY_ENV[provider]} of {agents}, empty until stored: "
                "aws secretsmanager put-secret-value --secret-id <this name> --secret-string <key>",
            )

    def _admit_task_events(self, rule_name: str) -> None:
        """Lets the fleet's EventBridge rule (known by name) deliver to the encrypted queue."""
        rule_arn = f"arn:{self.partition}:events:{self.region}:{self.account}:rule/{rule_name}"
        events = iam.ServicePrincipal("events.amazonaws.com")
        from_rule = {"ArnEquals": {"aws:SourceArn": rule_arn}}
        self.task_events_queue.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[events],
                actions=["sqs:SendMessage"],
                resources=[self.task_events_queue.queue_arn],
                conditions=from_rule,
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[events],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions=from_rule,
            )
        )

    def _acknowledge(self) -> None:
        """Every cdk-nag finding this stack accepts, with the reason it is safe."""
        for finding in ("AwsSolutions-SMG4", "NIST.800.53.R5-SecretsManagerRotationEnabled"):
            acknowledge(
                self.secrets,
                finding,
                "Provider API keys and the GitHub token are issued by those services: an operator rotates them "
                "there and stores the new value with put-secret-value. The admin key is rotated by an operator "
                "(put-secret-value, then a forced new deployment of the control-plane service, whose tasks read "
                "the secret at start; README, Deploying). A rotation Lambda can issue neither.",
            )
        acknowledge(
            self.backups,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup]",
            "AWS Backup's own service-role policy is the documented minimum for backing up DynamoDB and EFS; "
            "the role can be assumed only by backup.amazonaws.com.",
        )
        acknowledge(
            self.artifacts_policy,
            "AwsSolutions-IAM5[Resource::<ArtifactsBucket88671897.Arn>/tenants/*]",
            "Artifact keys are created at run time under per-tenant prefixes; the control plane, the only holder "
            "of this policy, signs every URL for one tenant's one dispatch.",
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
