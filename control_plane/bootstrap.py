"""Creates the control plane's tables, queues and bucket in an emulator, from control_plane/schema.py.

Local mode (`outpost dev`) and the tests call `ensure_resources`; in AWS the CDK data stack
creates the same tables from the same schema, so the two never drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from agents.registry import AGENTS
from control_plane import schema
from control_plane.aws import new_session


@dataclass(frozen=True)
class Resources:
    """The names and URLs to put into OUTPOST_* variables (see `as_env`)."""

    tables: dict[str, str]  # settings field -> table name
    artifacts_bucket: str
    dispatch_queue_urls: dict[str, str] = field(default_factory=dict)
    task_events_queue_url: str = ""
    dead_letter_queue_url: str = ""

    def as_env(self) -> dict[str, str]:
        env = {f"OUTPOST_{name.upper()}": value for name, value in self.tables.items()}
        env["OUTPOST_ARTIFACTS_BUCKET"] = self.artifacts_bucket
        env["OUTPOST_DISPATCH_QUEUE_URLS"] = json.dumps(self.dispatch_queue_urls)
        env["OUTPOST_TASK_EVENTS_QUEUE_URL"] = self.task_events_queue_url
        env["OUTPOST_DEAD_LETTER_QUEUE_URL"] = self.dead_letter_queue_url
        return env


def table_definition(table: schema.Table, name: str) -> dict:
    """CreateTable arguments for one schema table (on-demand billing, string keys)."""
    keys = {table.partition_key, *(k for k in [table.sort_key] if k)}
    for index in table.indexes:
        keys.add(index.partition_key)
        if index.sort_key:
            keys.add(index.sort_key)

    def key_schema(pk: str, sk: str | None) -> list[dict]:
        return [{"AttributeName": pk, "KeyType": "HASH"}] + (
            [{"AttributeName": sk, "KeyType": "RANGE"}] if sk else []
        )

    definition: dict = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": k, "AttributeType": "S"} for k in sorted(keys)],
        "KeySchema": key_schema(table.partition_key, table.sort_key),
    }
    if table.indexes:
        definition["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index.name,
                "KeySchema": key_schema(index.partition_key, index.sort_key),
                "Projection": {"ProjectionType": "ALL"},
            }
            for index in table.indexes
        ]
    return definition


def ensure_resources(
    *,
    endpoint_url: str,
    region: str = "us-east-1",
    prefix: str = "outpost",
    agents: Iterable[str] = tuple(AGENTS),
) -> Resources:
    """Create (or find) every table, queue and the bucket; idempotent, safe to call on each start."""
    session = new_session(region)
    dynamodb = session.client("dynamodb", endpoint_url=endpoint_url)
    sqs = session.client("sqs", endpoint_url=endpoint_url)
    s3 = session.client("s3", endpoint_url=endpoint_url)

    tables: dict[str, str] = {}
    for table in schema.TABLES:
        name = f"{prefix}-{table.id.lower()}"
        try:
            dynamodb.create_table(**table_definition(table, name))
        except ClientError as error:
            if error.response["Error"]["Code"] != "ResourceInUseException":
                raise
        if table.ttl_attribute:
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
            )
        tables[table.settings_field] = name

    bucket = f"{prefix}-artifacts"
    try:
        s3.create_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise

    dlq = sqs.create_queue(QueueName=f"{prefix}-dispatch-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
    queues = {
        agent: sqs.create_queue(
            QueueName=f"{prefix}-dispatch-{agent}", Attributes={"RedrivePolicy": redrive}
        )["QueueUrl"]
        for agent in agents
    }
    events = sqs.create_queue(QueueName=f"{prefix}-task-events")["QueueUrl"]
    return Resources(
        tables=tables,
        artifacts_bucket=bucket,
        dispatch_queue_urls=queues,
        task_events_queue_url=events,
        dead_letter_queue_url=dlq,
    )
