"""The metrics contract between the control plane and the dashboards and alarms (issue 9 item 3).

Every Outpost metric (namespace control_plane.metrics.NAMESPACE) that a dashboard widget or an
alarm of any synthesized stage reads must be one the control-plane code really emits, under the
same name and dimension names, and with dimension values the code emits (Agent = an agent of the
registry; Status, StartKind and Reason = values the scenarios below produced). What the code
emits is learnt by running it: the scenarios of tests/control_plane/test_metrics_engine.py drive
a real engine world (a completed, a failed and a timed-out dispatch, warm and cold starts, a
cancel, tasks stopped for memory, crashed, interrupted and lost, the reconciler's timeouts and
expiries, a dead letter, refused and late claims, the scaler's passes and a refused launch)
with the EMF sink captured. Every alarm, composite ones included, must have an action.

Templates are read as CloudFormation has them: a dashboard's DashboardBody is a Fn::Join whose
tokens are rendered as placeholders before the JSON is parsed; alarms read one metric
(MetricName/Namespace/Dimensions) or metric-math queries (Metrics[].MetricStat), and SEARCH
expressions in either are read through their schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns

from agents.registry import AGENTS
from control_plane import metrics
from tests.control_plane.test_metrics_engine import SCENARIOS, Emitted, run_scenario
from tests.infra.conftest import ROOT, Synth

TOKEN = "TOKEN"  # what an unresolved CloudFormation token in a dashboard body is rendered as


@dataclass(frozen=True)
class Read:
    """One metric a widget or alarm reads. dimensions: name -> value (None: any, a SEARCH)."""

    where: str
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str | None], ...]
    unit: str | None = None  # an alarm's unit filter: a wrong one leaves it without data

    @property
    def dimension_names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.dimensions)


# -- reading templates ---------------------------------------------------------------------


def render(value: Any) -> str:
    """A DashboardBody as text: a string, or a Fn::Join of strings and tokens."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(part if isinstance(part, str) else TOKEN for part in parts)
    return TOKEN


SEARCH = re.compile(r"SEARCH\(\s*'(?P<query>(?:[^'\\]|\\.)*)'")
SCHEMA = re.compile(r"\{(?P<schema>[^}]*)\}")
METRIC_NAME = re.compile(r'MetricName\s*=\s*"?(?P<name>[A-Za-z0-9_.\-]+)"?')


def search_reads(expression: str, where: str) -> Iterator[Read]:
    """The metrics a SEARCH expression reads: its schema {Namespace,Dim,...} and MetricName."""
    for match in SEARCH.finditer(expression):
        query = match["query"]
        schema = SCHEMA.search(query)
        name = METRIC_NAME.search(query)
        assert schema and name, (
            f"{where}: a SEARCH without a schema and a MetricName cannot be checked: {query}"
        )
        namespace, *dims = [part.strip().strip('"') for part in schema["schema"].split(",")]
        yield Read(where, namespace, name["name"], tuple((dim, None) for dim in dims))


def dashboard_reads(body: dict[str, Any], where: str) -> Iterator[Read]:
    for index, widget in enumerate(body.get("widgets", [])):
        place = f"{where} widget {index} ({widget.get('properties', {}).get('title', widget.get('type'))})"
        previous: list[Any] = []
        for entry in widget.get("properties", {}).get("metrics", []):
            options = entry[-1] if entry and isinstance(entry[-1], dict) else {}
            fields = [part for part in entry if not isinstance(part, dict)]
            if "expression" in options and not fields:
                yield from search_reads(options["expression"], place)
                continue
            if fields and fields[0] == "...":  # the previous metric with these dimensions
                fields = previous[:2] + fields[1:]
            fields = [
                previous[i] if part == "." and i < len(previous) else part for i, part in enumerate(fields)
            ]
            previous = fields
            namespace, name, *dims = fields
            yield Read(place, namespace, name, tuple(zip(dims[::2], dims[1::2], strict=True)))


def alarm_reads(properties: dict[str, Any], where: str) -> Iterator[Read]:
    def dims(raw: list[dict[str, Any]] | None) -> tuple[tuple[str, str | None], ...]:
        return tuple((d["Name"], d["Value"] if isinstance(d["Value"], str) else TOKEN) for d in raw or [])

    if "MetricName" in properties:
        yield Read(
            where,
            properties["Namespace"],
            properties["MetricName"],
            dims(properties.get("Dimensions")),
            properties.get("Unit"),
        )
    for query in properties.get("Metrics", []):
        if "MetricStat" in query:
            stat = query["MetricStat"]
            metric = stat["Metric"]
            yield Read(
                where,
                metric["Namespace"],
                metric["MetricName"],
                dims(metric.get("Dimensions")),
                stat.get("Unit"),
            )
        elif "Expression" in query:
            yield from search_reads(query["Expression"], where)


def template_reads(template: dict[str, Any], stack: str) -> Iterator[Read]:
    for logical_id, resource in template.get("Resources", {}).items():
        where = f"{stack}/{logical_id}"
        if resource["Type"] == "AWS::CloudWatch::Dashboard":
            body = json.loads(render(resource["Properties"]["DashboardBody"]))
            yield from dashboard_reads(body, where)
        elif resource["Type"] == "AWS::CloudWatch::Alarm":
            yield from alarm_reads(resource["Properties"], where)


def alarms_without_actions(template: dict[str, Any], stack: str) -> list[str]:
    return [
        f"{stack}/{logical_id}"
        for logical_id, resource in template.get("Resources", {}).items()
        if resource["Type"] in ("AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm")
        and not resource["Properties"].get("AlarmActions")
    ]


# -- the contract --------------------------------------------------------------------------


def violations(reads: list[Read], emitted: Emitted) -> list[str]:
    """Each read of an Outpost metric that the code does not emit as read."""
    pairs = emitted.pairs()
    values = emitted.values()
    problems = []
    for read in reads:
        if read.namespace != metrics.NAMESPACE:
            continue
        if (read.name, read.dimension_names) not in pairs:
            emitted_as = sorted(sorted(dims) for name, dims in pairs if name == read.name)
            problems.append(
                f"{read.where}: {read.name} by {sorted(read.dimension_names)} is never emitted"
                f" (emitted by: {emitted_as or 'nothing'})"
            )
            continue
        if read.unit is not None and read.unit != metrics.UNITS[read.name]:
            problems.append(
                f"{read.where}: {read.name} in {read.unit}, emitted in {metrics.UNITS[read.name]}"
            )
        for dimension, value in read.dimensions:
            if value is None:
                continue  # a SEARCH: any value
            if dimension == metrics.DIM_AGENT:
                if value not in AGENTS:
                    problems.append(f"{read.where}: {read.name} for Agent={value!r}, not a registry agent")
            elif value not in values.get(dimension, set()):
                problems.append(f"{read.where}: {read.name} for {dimension}={value!r}, a value never emitted")
    return problems


@pytest.fixture(scope="module")
def emitted(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Emitted:
    """What the control plane emits when the scenarios run (each in a fresh engine world)."""
    capture = Emitted()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(metrics, "sink", capture)
        for scenario in SCENARIOS:
            run_scenario(scenario, moto_endpoint, tmp_path_factory.mktemp(scenario.__name__))
    return capture


def all_reads(synth: Synth) -> list[Read]:
    return [
        read
        for env, stacks in synth.raw.items()
        for stack, template in stacks.items()
        for read in template_reads(template, f"{env}/{stack}")
    ]


def test_the_scenarios_emit_every_declared_metric_with_its_dimensions_and_every_closed_value(
    emitted: Emitted,
) -> None:
    declared = {(name, frozenset(metric.dimensions)) for name, metric in metrics.CATALOGUE.items()}
    assert emitted.pairs() == declared
    values = emitted.values()
    for dimension, allowed in metrics.DIMENSION_VALUES.items():
        assert values[dimension] == set(allowed), dimension
    assert values[metrics.DIM_AGENT] <= set(AGENTS)
    # every FAILED or TIMED_OUT end is counted once among the failures, with its reason
    bad_ends = [
        d for d in emitted.of(metrics.DISPATCHES_FINISHED) if d[metrics.DIM_STATUS] in ("FAILED", "TIMED_OUT")
    ]
    assert len(emitted.of(metrics.DISPATCH_FAILURES)) == len(bad_ends)
    for document in emitted.documents:  # single values: CloudWatch computes the percentiles
        assert all(isinstance(document[name], int | float) for name in names_of(document))


def names_of(document: dict[str, Any]) -> list[str]:
    return [m["Name"] for d in document["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]]


def test_every_outpost_metric_a_dashboard_or_alarm_reads_is_emitted_as_read(
    synth: Synth, emitted: Emitted
) -> None:
    reads = all_reads(synth)
    assert violations(reads, emitted) == []
    observability = (ROOT / "stacks" / "observability.py").exists() or any(
        resource["Type"] == "AWS::CloudWatch::Dashboard"
        for stacks in synth.raw.values()
        for template in stacks.values()
        for resource in template.get("Resources", {}).values()
    )
    if observability:  # the dashboards show Outpost's own signals, in every stage
        for env in synth.raw:
            outpost = {
                r.name for r in reads if r.namespace == metrics.NAMESPACE and r.where.startswith(f"{env}/")
            }
            assert outpost, f"stage {env}: no dashboard or alarm reads an Outpost metric"


def test_every_alarm_has_an_action(synth: Synth) -> None:
    missing = [
        alarm
        for env, stacks in synth.raw.items()
        for stack, template in stacks.items()
        for alarm in alarms_without_actions(template, f"{env}/{stack}")
    ]
    assert missing == []


# -- the reader itself, on a template made here --------------------------------------------


def outpost(name: str, unit: cloudwatch.Unit | None = None, **dimensions: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=metrics.NAMESPACE, metric_name=name, dimensions_map=dimensions, unit=unit
    )


def small_template(
    *, widgets: list[cloudwatch.IWidget], alarm_metric: cloudwatch.IMetric, action: bool
) -> dict:
    app = cdk.App()
    stack = cdk.Stack(app, "Probe", env=cdk.Environment(account="111111111111", region="us-east-1"))
    dashboard = cloudwatch.Dashboard(stack, "Board")
    dashboard.add_widgets(*widgets)
    alarm = cloudwatch.Alarm(stack, "Alarm", metric=alarm_metric, threshold=1, evaluation_periods=1)
    composite = cloudwatch.CompositeAlarm(stack, "Rollup", alarm_rule=cloudwatch.AlarmRule.any_of(alarm))
    if action:
        topic = sns.Topic(stack, "Topic")
        alarm.add_alarm_action(actions.SnsAction(topic))
        composite.add_alarm_action(actions.SnsAction(topic))
    template: dict = app.synth().get_stack_by_name("Probe").template
    return template


@pytest.fixture(scope="module")
def probe() -> dict:
    """A dashboard with a plain metric, a metric-math expression over two and a SEARCH; an
    alarm on metric math over an Outpost metric, and a composite alarm, both with actions."""
    finished = outpost(metrics.DISPATCHES_FINISHED, Agent="shell", Status="COMPLETED")
    failures = outpost(metrics.DISPATCH_FAILURES, Agent="shell", Reason=metrics.REASON_OOM)
    search = cloudwatch.MathExpression(
        expression=f"SEARCH('{{{metrics.NAMESPACE},Agent,StartKind}} MetricName=\"{metrics.CLAIM_WAIT}\"', 'p90', 300)",
        using_metrics={},
    )
    ratio = cloudwatch.MathExpression(
        expression="100 * f / (f + d)", using_metrics={"f": failures, "d": finished}
    )
    widgets: list[cloudwatch.IWidget] = [
        cloudwatch.GraphWidget(
            title="plain and math", left=[outpost(metrics.QUEUE_WAIT, Agent="codex"), ratio]
        ),
        cloudwatch.SingleValueWidget(title="search", metrics=[search]),
    ]
    alarm_metric = cloudwatch.MathExpression(
        expression="r",
        using_metrics={
            "r": outpost(metrics.RECONCILER_FAILURES, cloudwatch.Unit.COUNT, Agent="shell", Reason="timeout")
        },
    )
    return small_template(widgets=widgets, alarm_metric=alarm_metric, action=True)


def test_the_reader_finds_plain_math_and_search_metrics_in_dashboards_and_alarms(probe: dict) -> None:
    reads = {
        (r.name, r.dimensions) for r in template_reads(probe, "probe") if r.namespace == metrics.NAMESPACE
    }
    assert reads == {
        (metrics.QUEUE_WAIT, (("Agent", "codex"),)),
        (metrics.DISPATCH_FAILURES, (("Agent", "shell"), ("Reason", "oom"))),
        (metrics.DISPATCHES_FINISHED, (("Agent", "shell"), ("Status", "COMPLETED"))),
        (metrics.CLAIM_WAIT, (("Agent", None), ("StartKind", None))),
        (metrics.RECONCILER_FAILURES, (("Agent", "shell"), ("Reason", "timeout"))),
    }
    units = {r.name: r.unit for r in template_reads(probe, "probe") if r.unit}
    assert units == {metrics.RECONCILER_FAILURES: "Count"}
    assert alarms_without_actions(probe, "probe") == []


def test_the_contract_refuses_what_nothing_emits(emitted: Emitted) -> None:
    def read(name: str, **dims: str | None) -> Read:
        return Read("probe", metrics.NAMESPACE, name, tuple(dims.items()))

    assert violations([read(metrics.DISPATCH_FAILURES, Agent="shell", Reason="oom")], emitted) == []
    bad = [
        read("DispatchesLost", Agent="shell"),  # a name nothing emits
        read(metrics.DISPATCH_FAILURES, Agent="shell"),  # a dimension missing
        read(metrics.QUEUE_WAIT, Agent="shell", Status="FAILED"),  # a dimension too many
        read(metrics.DISPATCHES_FINISHED, Agent="shell", Status="SUCCEEDED"),  # not a status
        read(metrics.DISPATCH_FAILURES, Agent="shell", Reason="quota"),  # a reason never emitted
        read(metrics.COLD_STARTS, Agent="openhands"),  # not a registry agent
        read(metrics.CLAIM_WAIT, Agent=None),  # a SEARCH whose schema misses a dimension
        Read("probe", metrics.NAMESPACE, metrics.QUEUE_WAIT, (("Agent", "shell"),), "Milliseconds"),  # a unit
    ]
    assert [len(violations([r], emitted)) for r in bad] == [1] * len(bad)


def test_an_alarm_without_an_action_is_found() -> None:
    template = small_template(
        widgets=[cloudwatch.TextWidget(markdown="x")],
        alarm_metric=outpost(metrics.TASK_FAILURES, Agent="shell"),
        action=False,
    )
    alarms = {
        f"probe/{logical_id}": resource["Type"]
        for logical_id, resource in template["Resources"].items()
        if resource["Type"].startswith("AWS::CloudWatch::") and resource["Type"].endswith("Alarm")
    }
    assert sorted(alarms.values()) == ["AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm"]
    assert sorted(alarms_without_actions(template, "probe")) == sorted(alarms)


def test_the_dashboard_reader_renders_tokens_inside_the_body() -> None:
    body = {
        "Fn::Join": [
            "",
            ['{"widgets":[{"properties":{"region":"', {"Ref": "AWS::Region"}, '","metrics":[]}}]}'],
        ]
    }
    assert json.loads(render(body)) == {"widgets": [{"properties": {"region": TOKEN, "metrics": []}}]}
