"""One Secrets Manager secret per provider key, plus the GitHub token and the admin key."""

from __future__ import annotations

from aws_cdk import CfnResource, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager

from agents.registry import PROVIDER_SECRETS
from constructs import Construct

# The secret names the rest of the app refers to: the four providers, GitHub and admin.
SECRET_NAMES = (*PROVIDER_SECRETS, "github", "admin")
GENERATED = ("admin",)  # the only value this app can make; the others are issued elsewhere


class ProviderSecrets(Construct):
    def __init__(
        self, scope: Construct, id: str, *, encryption_key: kms.IKey, removal_policy: RemovalPolicy
    ) -> None:
        super().__init__(scope, id)
        # Provider keys and the GitHub token are issued by those services and set by an operator
        # (`aws secretsmanager put-secret-value`, README "Deploying"); the admin key is generated
        # here. A provider secret starts empty rather than random, so that a key nobody stored is
        # refused at dispatch (control_plane/runtime/provider_keys.py) instead of being sent to
        # the provider as a bogus key.
        self.secrets: dict[str, secretsmanager.Secret] = {}
        for name in SECRET_NAMES:
            secret = secretsmanager.Secret(
                self,
                name.capitalize(),
                description=f"Outpost {name} key",
                encryption_key=encryption_key,
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    password_length=48, exclude_punctuation=True
                )
                if name in GENERATED
                else None,
                removal_policy=removal_policy,
            )
            if name not in GENERATED:
                # The L2 Secret always renders GenerateSecretString. "If you omit both
                # GenerateSecretString and SecretString, you create an empty secret"
                # (CloudFormation template reference, AWS::SecretsManager::Secret): no version,
                # so nothing is staged AWSCURRENT until put-secret-value. Same construct, same
                # logical id (tests/infra/test_stateful_resources.py).
                resource = secret.node.default_child
                assert isinstance(resource, CfnResource)
                resource.add_property_deletion_override("GenerateSecretString")
            self.secrets[name] = secret
