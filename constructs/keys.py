"""Customer-managed KMS keys with rotation on."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms

from constructs import Construct


def customer_key(
    scope: Construct,
    id: str,
    *,
    description: str,
    removal_policy: RemovalPolicy,
    service_principals: Sequence[str] = (),
) -> kms.Key:
    """A rotating customer key; `service_principals` may use it to encrypt and decrypt (e.g. logs)."""
    key = kms.Key(scope, id, description=description, enable_key_rotation=True, removal_policy=removal_policy)
    for principal in service_principals:
        key.grant_encrypt_decrypt(iam.ServicePrincipal(principal))
    return key
