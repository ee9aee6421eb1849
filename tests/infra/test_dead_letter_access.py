"""The control plane can read what the dispatch queues dead-letter: its task is told the DLQ's
URL and its task role may receive and delete there (control_plane/engine/deadletters.py)."""

from __future__ import annotations

import json

import pytest

from tests.infra.conftest import Synth


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_control_plane_is_given_the_dead_letter_queue(synth: Synth, env: str) -> None:
    [task] = [
        t["Properties"]
        for k, t in synth.resources(env, "Fleet", "AWS::ECS::TaskDefinition").items()
        if k.startswith("ControlPlane")
    ]
    (container,) = task["ContainerDefinitions"]
    variables = {e["Name"]: json.dumps(e["Value"]) for e in container["Environment"]}
    assert "DeadLetterQueue" in variables["OUTPOST_DEAD_LETTER_QUEUE_URL"]

    granted = [
        statement
        for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
        for policy in synth.resources(env, "Fleet", kind).values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "sqs:ReceiveMessage" in statement["Action"] and "sqs:DeleteMessage" in statement["Action"]
    ]
    assert any("DeadLetterQueue" in json.dumps(statement["Resource"]) for statement in granted)
