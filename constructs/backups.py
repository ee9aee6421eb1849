"""A daily AWS Backup plan for the stateful stores (tables and workspaces)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_backup as backup
from aws_cdk import aws_kms as kms

from constructs import Construct


class Backups(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        resources: list[backup.BackupResource],
        encryption_key: kms.IKey,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, id)
        vault = backup.BackupVault(
            self, "Vault", encryption_key=encryption_key, removal_policy=removal_policy
        )
        self.plan = backup.BackupPlan.daily35_day_retention(self, "Plan", vault)
        self.plan.add_selection("Stores", resources=resources)
