"""How Outpost's hand-built alarms are declared for cdk-monitoring-constructs.

Each alarm carries one tag naming the composite alarm it rolls up into and a link to its
runbook entry (docs/runbook.md), whose anchor is the alarm's name there.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from cdk_monitoring_constructs import CustomMetricWithAlarm, CustomThreshold

RUNBOOK = "docs/runbook.md"
# The composite alarms: everything that says the fleet is failing its work, and everything that
# says a resource is running out.
FLEET_HEALTH = "fleet-health"
RESOURCE_EXHAUSTION = "resource-exhaustion"
COMPOSITES = (FLEET_HEALTH, RESOURCE_EXHAUSTION)
DISAMBIGUATOR = "Critical"


def runbook(anchor: str) -> str:
    return f"{RUNBOOK}#{anchor}"


def threshold(
    value: float,
    *,
    composite: str,
    anchor: str,
    below: bool = False,
    periods: int = 1,
    missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
) -> CustomThreshold:
    """Alarm when the metric is above `value` (below, when `below`) for `periods` periods in a row."""
    assert composite in COMPOSITES, composite
    return CustomThreshold(
        threshold=value,
        comparison_operator=(
            cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD
            if below
            else cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
        ),
        evaluation_periods=periods,
        datapoints_to_alarm=periods,
        treat_missing_data_override=missing,
        custom_tags=[composite],
        runbook_link=runbook(anchor),
    )


def alarmed(
    metric: cloudwatch.Metric | cloudwatch.MathExpression,
    name: str,
    value: float,
    *,
    composite: str,
    anchor: str,
    below: bool = False,
    periods: int = 1,
    missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
) -> CustomMetricWithAlarm:
    """A metric of a custom metric group, with its one alarm (see threshold())."""
    return CustomMetricWithAlarm(
        metric=metric,
        alarm_friendly_name=name,
        add_alarm={
            DISAMBIGUATOR: threshold(
                value, composite=composite, anchor=anchor, below=below, periods=periods, missing=missing
            )
        },
    )


def library_alarm(
    *, composite: str, anchor: str, periods: int = 1, minutes: int | None = None
) -> dict[str, Any]:
    """The same tag, runbook link and evaluation for a cdk-monitoring-constructs threshold."""
    assert composite in COMPOSITES, composite
    props: dict[str, Any] = {
        "custom_tags": [composite],
        "runbook_link": runbook(anchor),
        "evaluation_periods": periods,
        "datapoints_to_alarm": periods,
    }
    if minutes is not None:
        props["period"] = Duration.minutes(minutes)
    return props
