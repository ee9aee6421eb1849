"""Registry stack: the seven ECR repositories the images are published to."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk

from constructs import Construct
from constructs.image_repositories import ImageRepositories
from stacks.config import EnvironmentConfig
from stacks.policies import removal_policy


class RegistryStack(cdk.Stack):
    def __init__(self, scope: Construct, id: str, *, config: EnvironmentConfig, **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        self.repositories = ImageRepositories(
            self, "Repositories", immutable_tags=config.immutable_tags, removal_policy=removal_policy(config)
        ).repositories
        for image, repository in self.repositories.items():
            cdk.CfnOutput(
                self,
                f"{image.title().replace('-', '')}RepositoryUri",
                value=repository.repository_uri,
                description=f"The {image} image's ECR repository "
                "(agents/images/scripts/publish-images.sh pushes to it)",
            )
