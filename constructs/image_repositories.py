"""The seven ECR repositories: scanned, encrypted, with a lifecycle and optional immutable tags."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ecr as ecr

from agents.registry import IMAGE_REPOSITORIES
from constructs import Construct


class ImageRepositories(Construct):
    def __init__(
        self, scope: Construct, id: str, *, immutable_tags: bool, removal_policy: RemovalPolicy
    ) -> None:
        super().__init__(scope, id)
        self.repositories: dict[str, ecr.Repository] = {}
        for name in IMAGE_REPOSITORIES:
            self.repositories[name] = ecr.Repository(
                self,
                name.title().replace("-", ""),
                image_scan_on_push=True,
                encryption=ecr.RepositoryEncryption.KMS,
                image_tag_mutability=ecr.TagMutability.IMMUTABLE
                if immutable_tags
                else ecr.TagMutability.MUTABLE,
                lifecycle_rules=[
                    ecr.LifecycleRule(
                        rule_priority=1,
                        description="expire untagged images after 7 days",
                        tag_status=ecr.TagStatus.UNTAGGED,
                        max_image_age=Duration.days(7),
                    ),
                    ecr.LifecycleRule(
                        rule_priority=2,
                        description="keep the last 10 tagged images",
                        tag_status=ecr.TagStatus.TAGGED,
                        tag_pattern_list=["*"],
                        max_image_count=10,
                    ),
                ],
                empty_on_delete=False,
                removal_policy=removal_policy,
            )
