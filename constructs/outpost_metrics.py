"""CloudWatch metrics of Outpost's own signals, read only through control_plane/metrics.py.

Every widget and alarm that reads an Outpost metric builds it here, so a metric name or a
dimension set that the control plane does not emit fails at synth, not as an empty graph.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

from control_plane.metrics import DIMENSION_VALUES, DIMENSIONS, NAMESPACE

FIVE_MINUTES = Duration.minutes(5)


def outpost_metric(
    name: str,
    dimensions: Mapping[str, str],
    *,
    statistic: str,
    label: str | None = None,
    period: Duration = FIVE_MINUTES,
) -> cloudwatch.Metric:
    """One metric of control_plane/metrics.py, under exactly the dimensions it is emitted with."""
    if name not in DIMENSIONS:
        raise ValueError(f"{name} is not a metric of control_plane/metrics.py")
    if set(dimensions) != set(DIMENSIONS[name]):
        raise ValueError(f"{name} is emitted with dimensions {DIMENSIONS[name]}, not {sorted(dimensions)}")
    for dimension, value in dimensions.items():
        allowed = DIMENSION_VALUES.get(dimension)
        if allowed is not None and value not in allowed:
            raise ValueError(f"{name}: dimension {dimension} is never {value!r}; it takes {allowed}")
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map=dict(dimensions),
        statistic=statistic,
        label=label,
        period=period,
    )
