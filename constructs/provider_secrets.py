"""One Secrets Manager secret per provider key, plus the GitHub token and the admin key."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager

from agents.registry import PROVIDER_SECRETS
from constructs import Construct

# The secret names the rest of the app refers to: the four providers, GitHub and admin.
SECRET_NAMES = (*PROVIDER_SECRETS, "github", "admin")


class ProviderSecrets(Construct):
    def __init__(
        self, scope: Construct, id: str, *, encryption_key: kms.IKey, removal_policy: RemovalPolicy
    ) -> None:
        super().__init__(scope, id)
        # Provider keys and the GitHub token are issued by those services and set by an operator
        # (`aws secretsmanager put-secret-value`); the admin key is generated here.
        self.secrets: dict[str, secretsmanager.Secret] = {
            name: secretsmanager.Secret(
                self,
                name.capitalize(),
                description=f"Outpost {name} key",
                encryption_key=encryption_key,
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    password_length=48, exclude_punctuation=True
                ),
                removal_policy=removal_policy,
            )
            for name in SECRET_NAMES
        }
