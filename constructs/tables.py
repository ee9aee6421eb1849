"""DynamoDB tables built from control_plane/schema.py, the single definition of their keys."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms

from constructs import Construct
from control_plane.schema import Table


def _string_key(name: str) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING)


class SchemaTable(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        schema: Table,
        encryption_key: kms.IKey | None,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, id)
        self.table = dynamodb.TableV2(
            self,
            "Table",
            partition_key=_string_key(schema.partition_key),
            sort_key=_string_key(schema.sort_key) if schema.sort_key else None,
            billing=dynamodb.Billing.on_demand(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=(
                dynamodb.TableEncryptionV2.customer_managed_key(encryption_key)
                if encryption_key
                else dynamodb.TableEncryptionV2.aws_managed_key()
            ),
            time_to_live_attribute=schema.ttl_attribute,
            deletion_protection=removal_policy == RemovalPolicy.RETAIN,
            removal_policy=removal_policy,
            global_secondary_indexes=[
                dynamodb.GlobalSecondaryIndexPropsV2(
                    index_name=index.name,
                    partition_key=_string_key(index.partition_key),
                    sort_key=_string_key(index.sort_key) if index.sort_key else None,
                )
                for index in schema.indexes
            ],
        )
