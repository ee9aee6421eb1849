"""The SNS topic every Outpost alarm notifies, encrypted with a key of its own.

CloudWatch publishes to an encrypted topic only when the key lets the CloudWatch service
use it, hence the grant below. Without an e-mail address the topic still exists (other
subscribers can be added by hand) and synth says so with a warning on stderr. (Not a construct
annotation: the security gate fails synth on any unacknowledged annotation warning, and an
acknowledged one is no longer shown.)
"""

from __future__ import annotations

import warnings

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions

from constructs import Construct
from constructs.keys import customer_key


class MissingAlarmEmail(UserWarning):
    """An environment whose alarms page nobody."""


class AlarmTopic(Construct):
    def __init__(
        self, scope: Construct, id: str, *, email: str | None, environment: str, removal_policy: RemovalPolicy
    ) -> None:
        super().__init__(scope, id)
        self.key = customer_key(
            self, "Key", description="Outpost alarm notifications", removal_policy=removal_policy
        )
        self.topic = sns.Topic(self, "Topic", master_key=self.key, enforce_ssl=True)
        # Alarms publish as the CloudWatch service, which must be able to encrypt for the topic.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" is this key
            )
        )
        if email:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        else:
            warnings.warn(
                f"environment '{environment}' has no alarm_email: its alarms notify the SNS topic, but "
                "nobody is subscribed to it; set alarm_email in cdk.json to be paged",
                MissingAlarmEmail,
                stacklevel=1,  # this line, not jsii's constructor machinery above it
            )
