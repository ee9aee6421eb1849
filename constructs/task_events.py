"""ECS task-state changes of one cluster, delivered by EventBridge to the task-events queue."""

from __future__ import annotations

from aws_cdk import Annotations
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_sqs as sqs

from constructs import Construct


class TaskEvents(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        rule_name: str,
        cluster: ecs.ICluster,
        queue_arn: str,
        queue_url: str,
    ) -> None:
        super().__init__(scope, id)
        # The queue lives in the data stack, which admits this rule by name in its own queue and
        # key policies; an imported queue keeps this stack from editing them (and from a cycle).
        queue = sqs.Queue.from_queue_attributes(self, "Queue", queue_arn=queue_arn, queue_url=queue_url)
        self.rule = events.Rule(
            self,
            "Rule",
            rule_name=rule_name,
            description="ECS task state changes of the Outpost cluster",
            event_pattern=events.EventPattern(
                source=["aws.ecs"],
                detail_type=["ECS Task State Change"],
                detail={"clusterArn": [cluster.cluster_arn]},
            ),
            targets=[targets.SqsQueue(queue)],
        )
        # Rule and queue are in one account and region, even when the stage leaves them to deploy time.
        Annotations.of(self.rule).acknowledge_warning(
            "@aws-cdk/aws-events:ruleUnresolvedEnvironment", "rule and queue share one environment"
        )
