"""The container runtime's reading of a task definition: it follows what the definition says and
refuses what it cannot enforce (tests/e2e/test_container_runtime.py runs real containers)."""

from __future__ import annotations

import copy

import pytest

from control_plane.runtime.container_spec import Mount, SpecError, spec_from_task_definition

# The shape constructs/agent_task.py synthesizes (Dev stage, shell agent), AWS-only keys kept.
AGENT_TASK = {
    "ContainerDefinitions": [
        {
            "Essential": True,
            "Image": {"Fn::Join": ["", ["repo", ":latest"]]},
            "LinuxParameters": {"Capabilities": {"Drop": ["ALL"]}},
            "LogConfiguration": {"LogDriver": "awslogs", "Options": {}},
            "MountPoints": [
                {"ContainerPath": "/workspace", "ReadOnly": False, "SourceVolume": "workspace"},
                {"ContainerPath": "/tmp", "ReadOnly": False, "SourceVolume": "scratch"},
            ],
            "Name": "agent",
            "Privileged": False,
            "ReadonlyRootFilesystem": True,
            "StopTimeout": 120,
            "User": "10001:10001",
        }
    ],
    "Volumes": [{"Name": "workspace"}, {"Name": "scratch"}],
}


def _with(**changes) -> dict:
    definition = copy.deepcopy(AGENT_TASK)
    definition["ContainerDefinitions"][0].update(changes)
    return definition


def test_reads_user_root_capabilities_mounts_and_stop_timeout() -> None:
    spec = spec_from_task_definition(AGENT_TASK)
    assert spec.user == "10001:10001" and spec.read_only_root and spec.cap_drop == ("ALL",)
    assert spec.mounts == (Mount("/workspace", "workspace", False), Mount("/tmp", "scratch", False))
    assert spec.stop_timeout_s == 120 and not spec.init_process


def test_follows_a_changed_definition() -> None:
    spec = spec_from_task_definition(
        _with(User="20002:20002", ReadonlyRootFilesystem=False, Environment=[{"Name": "A", "Value": "1"}])
    )
    assert (spec.user, spec.read_only_root, spec.environment) == ("20002:20002", False, (("A", "1"),))


@pytest.mark.parametrize(
    "change",
    [
        {"Ulimits": [{"Name": "nofile", "HardLimit": 1, "SoftLimit": 1}]},
        {"Privileged": True},
        {"LinuxParameters": {"Capabilities": {"Drop": ["ALL"]}, "Devices": []}},
    ],
    ids=["unknown-key", "privileged", "unknown-linux-parameter"],
)
def test_refuses_what_it_cannot_enforce(change: dict) -> None:
    with pytest.raises(SpecError):
        spec_from_task_definition(_with(**change))


def test_refuses_a_volume_that_is_not_task_local() -> None:
    definition = copy.deepcopy(AGENT_TASK)
    definition["Volumes"][0]["Host"] = {"SourcePath": "/var/run"}
    with pytest.raises(SpecError):
        spec_from_task_definition(definition)
