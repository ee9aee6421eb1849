"""Per-environment policies derived from the config: removal, retention, acknowledgments."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_logs as logs

from constructs import IConstruct
from stacks.config import EnvironmentConfig

_RETENTION = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS", 30: "ONE_MONTH",
    60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS", 150: "FIVE_MONTHS", 180: "SIX_MONTHS",
    365: "ONE_YEAR", 400: "THIRTEEN_MONTHS", 545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS", 1096: "THREE_YEARS",
    1827: "FIVE_YEARS", 2192: "SIX_YEARS", 2557: "SEVEN_YEARS", 2922: "EIGHT_YEARS", 3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}  # fmt: skip


def removal_policy(config: EnvironmentConfig) -> cdk.RemovalPolicy:
    return cdk.RemovalPolicy.RETAIN if config.retain_data else cdk.RemovalPolicy.DESTROY


def log_retention(config: EnvironmentConfig) -> logs.RetentionDays:
    return getattr(logs.RetentionDays, _RETENTION[config.log_retention_days])


def acknowledge(scope: IConstruct, finding: str, reason: str) -> None:
    """Accepts one cdk-nag finding on one construct, with the reason it is safe there."""
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=finding, reason=reason))
