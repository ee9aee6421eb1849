"""An encrypted, TLS-only SQS queue with a dead-letter queue."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs

from constructs import Construct


class WorkQueue(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        encryption_key: kms.IKey,
        dead_letter_queue: sqs.IQueue,
        max_receive_count: int = 5,
        visibility_timeout_s: int = 60,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, id)
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=encryption_key,
            enforce_ssl=True,
            retention_period=Duration.days(4),
            visibility_timeout=Duration.seconds(visibility_timeout_s),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=dead_letter_queue, max_receive_count=max_receive_count
            ),
            removal_policy=removal_policy,
        )


def dead_letter_queue(
    scope: Construct, id: str, *, encryption_key: kms.IKey, removal_policy: RemovalPolicy
) -> sqs.Queue:
    """The DLQ itself: kept 14 days (the SQS maximum) so that failures can be inspected."""
    return sqs.Queue(
        scope,
        id,
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=encryption_key,
        enforce_ssl=True,
        retention_period=Duration.days(14),
        removal_policy=removal_policy,
    )
