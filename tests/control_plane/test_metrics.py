"""EMF metrics: named once in control_plane.metrics, emitted on create, start and finish."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from control_plane import metrics
from control_plane.lifecycle import Status
from control_plane.store import Actor


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict]]:
    lines: list[dict] = []
    monkeypatch.setattr(metrics, "sink", lambda line: lines.append(json.loads(line)))
    yield lines


def _metric_names(document: dict) -> set[str]:
    return {m["Name"] for d in document["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}


def test_dispatch_lifecycle_emits_emf_metrics(client: TestClient, tenant: dict, emitted: list[dict]) -> None:
    dispatch_id = client.post(
        "/dispatch", json={"agent": "shell", "task": "x"}, headers=tenant["headers"]
    ).json()["dispatch_id"]
    stores = client.app.state.stores  # type: ignore[attr-defined]
    stores.dispatches.transition(dispatch_id=dispatch_id, to=Status.RUNNING, actor=Actor.system("t"))
    stores.dispatches.transition(dispatch_id=dispatch_id, to=Status.COMPLETED, actor=Actor.system("t"))

    created, started, finished = emitted
    assert _metric_names(created) == {metrics.DISPATCHES_CREATED}
    assert created[metrics.DIM_AGENT] == "shell" and created[metrics.DISPATCHES_CREATED] == 1
    assert _metric_names(started) == {metrics.QUEUE_WAIT}
    assert started[metrics.QUEUE_WAIT] >= 0
    assert _metric_names(finished) == {metrics.DISPATCHES_FINISHED, metrics.DISPATCH_DURATION}
    assert finished[metrics.DIM_STATUS] == "COMPLETED"
    for document in emitted:
        directive = document["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == metrics.NAMESPACE
        assert all(dim in document for dim in directive["Dimensions"][0])


def test_emit_refuses_undeclared_dimensions() -> None:
    with pytest.raises(ValueError, match="dimensions"):
        metrics.emit({metrics.DISPATCHES_CREATED: 1}, Agent="shell", Status="FAILED")


def test_metrics_module_imports_without_heavy_dependencies() -> None:
    # The CDK app imports the names; it must not pull in boto3, FastAPI or pydantic.
    code = (
        "import sys, control_plane.metrics as m; "
        "heavy = {'boto3', 'botocore', 'fastapi', 'pydantic'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
