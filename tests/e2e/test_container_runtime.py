"""End to end over `outpost dev --runtime container`: jobs run in the built `base` image with
the Dev stage's synthesized task definition constraints (buildah, chroot isolation).

The images are those the image tests check (tests/images/building.py: built once per session
with agents/images/scripts/build-images.sh, tag `pytest`), and the Dev stage is synthesized
once through app.py, as `cdk synth` runs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from control_plane.runtime.buildah import default_storage, in_namespace
from control_plane.runtime.container_spec import synthesize
from tests.e2e.helpers import Dev, start_dev, stop_dev, wait_for
from tests.images.building import TEST_TAG as TAG

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"}
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def cdk_out(tmp_path_factory) -> Path:
    return synthesize(tmp_path_factory.mktemp("container") / "cdk.out")


@pytest.fixture(scope="module")
def base_image(built: dict[str, str]) -> str:
    return built["base"]  # tests/images/building.py: the seven images, once per session


@pytest.fixture(scope="module")
def dev(tmp_path_factory, cdk_out: Path, base_image: str) -> Iterator[Dev]:
    state = tmp_path_factory.mktemp("outpost-dev-container") / "state"
    instance = start_dev(
        state,
        extra_env={"OUTPOST_CONTAINER_IMAGE_TAG": TAG},
        args=("--runtime", "container", "--cdk-out", str(cdk_out)),
    )
    try:
        yield instance
    finally:
        stop_dev(instance)


def _final(dev: Dev, created: dict, timeout: float = 60) -> dict:
    return dev.wait_status(created["dispatch_id"], TERMINAL, timeout=timeout)


def _patch(dev: Dev, dispatch_id: str) -> str:
    with dev.client() as client:
        items = client.get(f"/dispatch/{dispatch_id}/artifacts").json()["items"]
    url = {item["name"]: item["url"] for item in items}["patch.diff"]
    return httpx.get(url, timeout=30).text


def _task_of(dev: Dev, marker: str) -> dict:
    """The container task whose workspace holds ``marker`` (its state file's content)."""
    runtime = dev.state_dir / "runtime"

    def found() -> dict | None:
        for workspace in runtime.glob("tasks/*/volumes/workspace"):
            try:
                holds = bool(list(workspace.rglob(marker)))
            except OSError:  # another task's directory, removed while it was read
                continue
            if holds:
                path = runtime / "state" / f"{workspace.parent.parent.name}.json"
                state = json.loads(path.read_text()) if path.exists() else {}
                return state if state.get("main_pid") else None
        return None

    return wait_for(found, 30, what=f"the task running {marker}")


def _containers() -> set[str]:
    """buildah's containers. A listing fails (exit 125) when a container it is reading is removed
    at that moment (the runtime removes a stopped task's container): list again."""
    for _ in range(10):
        listing = subprocess.run(
            [
                "buildah",
                "--storage-driver",
                default_storage(),
                "containers",
                "--format",
                "{{.ContainerName}}",
            ],
            capture_output=True,
            text=True,
        )
        if listing.returncode == 0:
            return set(listing.stdout.split())
        time.sleep(0.3)
    raise AssertionError(f"buildah containers failed ten times: {listing.stderr}")


def test_a_shell_job_completes_in_the_image_as_the_task_user_without_capabilities(dev: Dev):
    created = dev.dispatch("id -u > who.txt; grep CapEff /proc/self/status >> who.txt; echo scratch > /tmp/s")
    final = _final(dev, created)
    assert final["status"] == "COMPLETED", final
    patch = _patch(dev, created["dispatch_id"])
    assert "+10001" in patch
    assert "+CapEff:\t0000000000000000" in patch


@pytest.mark.parametrize("path", ["/var/tmp/escape", "/opt/outpost/escape", "/run/lock/escape"])
def test_a_job_cannot_write_outside_workspace_and_tmp(dev: Dev, path: str):
    # /var/tmp and /run/lock are world-writable in the image: only the read-only root stops it
    created = dev.dispatch(f"touch {path}")
    final = _final(dev, created)
    assert final["status"] == "FAILED", final
    assert final["exit_code"] == 1


def test_what_the_container_enforces_is_what_the_task_definition_says(dev: Dev, cdk_out: Path):
    fleet = next((cdk_out / "assembly-Dev").glob("DevFleet*.template.json"))
    resources = json.loads(fleet.read_text())["Resources"]
    (definition,) = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::ECS::TaskDefinition" and "Shell" in r["Properties"]["Family"]
    ]
    (container,) = definition["ContainerDefinitions"]
    marker = f"m-{uuid.uuid4().hex}"
    created = dev.dispatch(f"touch {marker}; exec sleep 300")
    task = _task_of(dev, marker)
    pid = task["main_pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    uid, gid = container["User"].split(":")
    assert f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}" in status and f"Gid:\t{gid}\t{gid}" in status
    assert container["LinuxParameters"]["Capabilities"]["Drop"] == ["ALL"]
    for line in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert f"{line}:\t0000000000000000" in status
    mounts = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        mounts[fields[4]] = fields[5].split(",")[0]  # mount point -> rw/ro (the last one wins)
    assert mounts["/"] == ("ro" if container["ReadonlyRootFilesystem"] else "rw")
    declared = {m["ContainerPath"]: "ro" if m["ReadOnly"] else "rw" for m in container["MountPoints"]}
    assert {path: mounts[path] for path in declared} == declared
    assert task["stop_timeout_s"] == container["StopTimeout"]
    with dev.client() as client:
        client.delete(f"/dispatch/{created['dispatch_id']}")


def test_a_job_over_its_timeout_is_timed_out(dev: Dev):
    final = _final(dev, dev.dispatch("sleep 60", timeout_s=2))
    assert final["status"] == "TIMED_OUT", final


def test_cancelling_a_running_job_stops_its_container_and_removes_it(dev: Dev):
    marker = f"m-{uuid.uuid4().hex}"
    created = dev.dispatch(f"touch {marker}; sleep 300 & exec sleep 301")
    task = _task_of(dev, marker)
    assert task["container"] in _containers()
    with dev.client() as client:
        reply = client.delete(f"/dispatch/{created['dispatch_id']}")
    assert reply.status_code == 200 and reply.json()["status"] == "CANCELLED", reply.text
    wait_for(lambda: not in_namespace(task["namespace"]), 30, what="every process of the container gone")
    wait_for(lambda: task["container"] not in _containers(), 30, what="the container removed")
    # the task's directory goes right after its container (buildah rm, then the directory)
    wait_for(lambda: not Path(task["task_dir"]).exists(), 30, what="the task directory removed")
    assert dev.get(created["dispatch_id"])["status"] == "CANCELLED"


def test_a_container_interrupted_mid_job_is_requeued_and_completes_on_the_next_attempt(dev: Dev):
    marker = f"m-{uuid.uuid4().hex}"
    created = dev.dispatch(f"touch {marker}; sleep 3; echo finished > result.txt")
    task = _task_of(dev, marker)
    # what ECS does at a Spot interruption: SIGTERM to the container's main process
    os.kill(task["main_pid"], signal.SIGTERM)
    final = _final(dev, created, timeout=90)
    assert final["status"] == "COMPLETED", final
    assert final["attempt"] == 2
    assert "+finished" in _patch(dev, created["dispatch_id"])


def test_an_agent_whose_image_is_not_built_is_unavailable_with_the_command_that_builds_it(
    tmp_path: Path, base_image: str
):
    """Checked when the dispatch is made (POST /dispatch answers 409 with it), not a FAILED job."""
    from control_plane.runtime.container import ContainerRuntime

    built = ContainerRuntime(state_dir=tmp_path / "built", specs={}, image_tag=TAG)
    missing = ContainerRuntime(state_dir=tmp_path / "missing", specs={}, image_tag="never-built")
    try:
        assert built.agent_unavailable("shell") is None
        said = missing.agent_unavailable("claude")
    finally:
        built.close()
        missing.close()
    assert said == (
        "agent 'claude' has no image here: build it with "
        "`ENGINE=buildah TAG=never-built agents/images/scripts/build-images.sh claude`"
    )
