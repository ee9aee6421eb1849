"""End to end over `outpost dev --runtime container`: jobs run in the built images with the
Dev stage's synthesized task definition constraints (buildah, chroot isolation): shell jobs in
`base`, and a claude job in `claude` whose CLI reaches a fake Anthropic on loopback through the
model gateway, holding only its gateway token.

The images are those the image tests check (tests/images/building.py: built once per session
with agents/images/scripts/build-images.sh, tag `pytest`), and the Dev stage is synthesized
once through app.py, as `cdk synth` runs it. One `outpost dev` serves the module, started as
the real-agent tests start theirs (tests/agents/real/conftest.py: the operator's agent settings
point claude at the fake provider, the test keys are in its environment).
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
from tests.agents.real import test_claude
from tests.agents.real.conftest import CLAUDE_MODEL, CLAUDE_RETRIES, KEYS, RealOutpost, real_outpost
from tests.e2e.helpers import Dev, wait_for
from tests.images.building import TEST_TAG as TAG
from tests.providers.anthropic import FakeAnthropic
from tests.providers.server import Reply, Request

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
def anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture(scope="module")
def outpost(
    tmp_path_factory, cdk_out: Path, built: dict[str, str], anthropic: FakeAnthropic
) -> Iterator[RealOutpost]:
    settings = {
        "claude": {
            "base_url": anthropic.url,  # the gateway's upstream for claude
            "allowed_models": [CLAUDE_MODEL],
            "extra": {"CLAUDE_CODE_MAX_RETRIES": str(CLAUDE_RETRIES)},
        }
    }
    with real_outpost(
        tmp_path_factory.mktemp("outpost-dev-container"),
        agent_settings=settings,
        env={"OUTPOST_CONTAINER_IMAGE_TAG": TAG},
        args=("--runtime", "container", "--cdk-out", str(cdk_out)),
    ) as instance:
        yield instance


@pytest.fixture(scope="module")
def dev(outpost: RealOutpost) -> Dev:
    return outpost.dev


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


def _container_processes(dev: Dev, agent: str) -> dict[int, tuple[str, dict[str, str]]]:
    """pid -> (command line, environment) of every process in ``agent``'s running container,
    read from /proc as the kernel holds them: what each process was started with."""
    runtime = dev.state_dir / "runtime" / "state"

    def task() -> dict | None:
        for path in runtime.glob("*.json"):
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):  # being replaced
                continue
            if state.get("agent") == agent and state.get("namespace"):
                return state
        return None

    namespace = wait_for(task, 30, what=f"the {agent} container's main process")["namespace"]
    found = {}
    for pid in in_namespace(namespace):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:  # exited meanwhile
            continue
        pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
        found[pid] = (" ".join(a.decode(errors="replace") for a in argv), {k: v for k, _, v in pairs})
    return found


def test_claude_completes_in_its_image_through_the_model_gateway_without_the_provider_key(
    outpost: RealOutpost, anthropic: FakeAnthropic
):
    """The runner built into the `claude` image hands Claude Code only its gateway token and the
    gateway's URL; the gateway adds the real key, meters the calls, and the key is nowhere in
    the container or in anything the job left."""
    dev, key = outpost.dev, KEYS["ANTHROPIC_API_KEY"]
    read, edit, answer = test_claude.edit_turns(anthropic)
    processes: dict[int, tuple[str, dict[str, str]]] = {}

    def look_inside_then_read(request: Request) -> Reply:
        # Claude Code waits for this answer: its container and every process in it are alive.
        processes.update(_container_processes(dev, "claude"))
        return read(request)

    anthropic.script(look_inside_then_read, edit, answer)
    repo = outpost.repository("claude-in-container", {"greet.py": test_claude.GREET})
    done = outpost.run("claude", "Give greet() a name parameter.", repo_url=repo, model=CLAUDE_MODEL)

    assert done.record["status"] == "COMPLETED", (done.record, done.transcript[-3000:])
    assert done.changed_files == ["greet.py"]
    assert '+def greet(name: str = "world"):' in done.patch and '+    return f"hello, {name}"' in done.patch
    assert done.summary["final_message"] == test_claude.ANSWER
    # Claude Code ran in the container's workspace volume, not in a directory of the host.
    assert test_claude.workdir(anthropic.model_calls[0]).startswith("/workspace/")

    # Usage and cost are the gateway's: its count of the three answers (every prompt token is
    # input), priced for claude-sonnet-4-5 at $3/M input, $3.75/M cache writes, $0.30/M cache
    # reads, $15/M output; Claude Code's own figure agrees.
    assert done.record["cost_source"] == "gateway"
    assert done.record["tokens"] == {"input": 3880, "cached": 2500, "output": 100}
    assert done.record["cost_usd"] == pytest.approx((180 * 3 + 1200 * 3.75 + 2500 * 0.30 + 100 * 15) / 1e6)
    assert done.summary["cost_usd"] == pytest.approx(done.record["cost_usd"])

    # The provider got the dispatch's model and the real key on every request it saw.
    assert [r.json["model"] for r in anthropic.model_calls] == [CLAUDE_MODEL] * 3
    assert anthropic.requests and {r.header("x-api-key") for r in anthropic.requests} == {key}

    # Inside the container: Claude Code's environment holds the gateway token under the key's
    # name and the gateway as its endpoint; no process there (the runner included) has the key.
    agents = [env for command, env in processes.values() if "--dangerously-skip-permissions" in command]
    assert agents, sorted(command for command, _ in processes.values())
    for env in agents:
        assert env["ANTHROPIC_API_KEY"].startswith("t-"), sorted(env)
        assert env["ANTHROPIC_BASE_URL"] == f"{dev.url}/gateway/anthropic"
        assert "ANTHROPIC_AUTH_TOKEN" not in env
        # and the provider never saw the token: the gateway replaced it
        assert not [r for r in anthropic.requests if env["ANTHROPIC_API_KEY"] in json.dumps(r.headers)]
    holding = [command for command, env in processes.values() if key in "\0".join(env.values())]
    assert holding == [], f"the provider key is in the environment of {holding}"

    # Nor in what the job left: its record, result bundle, dispatch log, the container's
    # output as the runtime kept it, and the control plane's own log.
    with dev.client() as client:
        lines = client.get(f"/dispatch/{done.record['dispatch_id']}/logs").json()["lines"]
    assert lines
    traces = {
        "record": json.dumps(done.record),
        "summary": json.dumps(done.summary),
        "patch": done.patch,
        "transcript": done.transcript,
        "dispatch log": "\n".join(lines),
        "outpost dev": dev.stderr_path.read_text(errors="replace"),
        **{
            str(path): path.read_text(errors="replace")
            for path in (dev.state_dir / "runtime" / "logs").glob("*.log")
        },
    }
    assert [name for name, text in traces.items() if key in text] == []
