"""Every writable mount of every task definition fits its image on Fargate.

A Fargate bind mount (task-local volume) is root-owned unless the image declares a VOLUME at
the same path: the mount then takes the image directory's owner and content (AWS ECS, "Bind
mounts"; containers-roadmap #938). The containers run as uid 10001 on a read-only root, so a
mount point without a matching VOLUME would make the job's first write fail, on AWS only.

This test reads the synthesized task definitions of every stage and the Dockerfiles (following
each image's FROM chain to its base) and proves, for each mount point: the path is a declared
VOLUME in the container's image, a RUN creates it and chowns it to the container's user before
the VOLUME line, and the image's USER is that user. Anything a shipped RUN wrote into a volume
after its declaration would seed every task's volume (or, with other builders, be dropped), so
such RUNs work in a directory of their own. tests/images/test_images.py checks the same on the
built images.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agents.registry import IMAGE_REPOSITORIES

ROOT = Path(__file__).resolve().parents[2]
ENVS = ["dev", "staging", "prod"]
SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")"}


def dockerfile_for(image: str) -> Path:
    if image == "control-plane":
        return ROOT / "control_plane" / "Dockerfile"
    return ROOT / "agents" / "images" / image / "Dockerfile"


# --- a small Dockerfile reader ---------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def instructions(path: Path) -> list[Instruction]:
    """Continuation lines joined, comment lines dropped (as Docker's parser does)."""
    found: list[Instruction] = []
    pending = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not pending):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, args = pending.strip().partition(" ")
        found.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    assert not pending, f"{path}: unterminated continuation"
    return found


def substitute(text: str, variables: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in variables, f"${name} has no default"
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


def stages(path: Path) -> list[Stage]:
    """The build stages, with ARG defaults substituted into every instruction."""
    global_args: dict[str, str] = {}
    result: list[Stage] = []
    stage_args: dict[str, str] = {}
    for instruction in instructions(path):
        if instruction.keyword == "ARG":
            name, _, default = instruction.args.partition("=")
            if not result:
                global_args[name] = default
            else:
                stage_args[name] = substitute(default, stage_args) if default else global_args.get(name, "")
            continue
        if instruction.keyword == "FROM":
            base, *rest = substitute(instruction.args, global_args).split()
            result.append(Stage(base=base, name=rest[1] if rest[:1] == ["AS"] else None))
            stage_args = {}
            continue
        args = instruction.args
        if instruction.keyword in ("USER", "VOLUME"):
            args = substitute(args, stage_args)
        else:  # only the ARGs: a RUN's or an ENV's own shell variables stay as written
            for name, value in stage_args.items():
                args = args.replace(f"${{{name}}}", value)
        result[-1].instructions.append(Instruction(instruction.keyword, args))
    return result


def shipped_chain(image: str) -> list[Instruction]:
    """The instructions that make the image's final stage, oldest first, through FROM chains:
    earlier stages of the same file and Outpost's own images (outpost/<name>:...)."""
    path = dockerfile_for(image)
    by_name = {s.name: s for s in stages(path) if s.name}
    stage = stages(path)[-1]
    chain: list[Instruction] = []
    while True:
        chain[:0] = stage.instructions
        if stage.base in by_name:
            stage = by_name[stage.base]
        elif stage.base.startswith("outpost/"):
            return shipped_chain(stage.base.removeprefix("outpost/").split(":")[0]) + chain
        else:
            return chain  # a public base image: it declares no VOLUME


def volumes(instruction: Instruction) -> list[str]:
    if instruction.args.startswith("["):
        return list(json.loads(instruction.args))
    return instruction.args.split()


def commands(run: Instruction) -> list[list[str]]:
    """The simple commands of a RUN (its --flags dropped), split at shell operators."""
    lexer = shlex.shlex(run.args, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    found: list[list[str]] = [[]]
    for token in lexer:
        if token in SEPARATORS:
            found.append([])
        elif not (found == [[]] and token.startswith("--")):
            found[-1].append(token)
    return [c for c in found if c]


def run_mounts(run: Instruction) -> list[str]:
    flags = re.match(r"(?:--\S+\s+)*", run.args)
    return re.findall(r"--mount=(\S+)", flags.group(0) if flags else "")


@dataclass(frozen=True)
class ImageFacts:
    user: str | None
    volumes: dict[str, int]  # path -> index of its VOLUME instruction in the chain
    created: dict[str, int]  # path -> index of the RUN that mkdirs it
    owners: dict[str, tuple[str, int]]  # path -> (owner, index of the RUN that chowns it)
    runs_after_volumes: list[Instruction]


def image_facts(image: str) -> ImageFacts:
    chain = shipped_chain(image)
    user, vols, created, owners = None, {}, {}, {}
    for index, instruction in enumerate(chain):
        if instruction.keyword == "USER":
            user = instruction.args
        elif instruction.keyword == "VOLUME":
            vols.update({path: index for path in volumes(instruction)})
        elif instruction.keyword == "RUN":
            for command in commands(instruction):
                operands = [a for a in command[1:] if not a.startswith("-")]
                if command[0] == "mkdir":
                    created.update({path: index for path in operands})
                elif command[0] == "chown" and operands:
                    owners.update({path: (operands[0], index) for path in operands[1:]})
    first_volume = min(vols.values(), default=len(chain))
    runs = [i for i in chain[first_volume:] if i.keyword == "RUN"]
    return ImageFacts(user, vols, created, owners, runs)


# --- the task definitions --------------------------------------------------------------------


def image_of(container: dict) -> str:
    """The Outpost image repository a container definition pulls from."""
    text = json.dumps(container["Image"])
    matches = [name for name in IMAGE_REPOSITORIES if f"Repositories{name.title().replace('-', '')}" in text]
    assert len(matches) == 1, f"{container['Name']}: image {text} matches {matches}"
    return matches[0]


def containers(synth, env: str) -> list[tuple[str, dict]]:
    found = []
    for logical_id, resource in synth.resources(env, "Fleet", "AWS::ECS::TaskDefinition").items():
        found += [(logical_id, c) for c in resource["Properties"]["ContainerDefinitions"]]
    return found


@pytest.mark.parametrize("env", ENVS)
def test_every_task_definition_is_checked(synth, env):
    """The agents' and the control plane's task definitions, each with its mounts, and the egress
    proxy's, which writes nothing and mounts nothing."""
    found = containers(synth, env)
    ids = {logical_id.split("TaskDefinition")[0] for logical_id, _ in found}
    assert {"ControlPlane", "EgressProxy"} <= ids and len(ids) == len(synth.stages[env].fleet.agents) + 2
    for logical_id, container in found:
        assert bool(container.get("MountPoints")) != logical_id.startswith("EgressProxy"), logical_id


@pytest.mark.parametrize("env", ENVS)
def test_every_mount_point_is_a_volume_of_the_image_owned_by_the_task_user(synth, env):
    for logical_id, container in containers(synth, env):
        image = image_of(container)
        facts = image_facts(image)
        user = container["User"]
        where = f"{env} {logical_id} ({image} image)"
        assert re.fullmatch(r"[1-9]\d*:\d+", user), f"{where}: user {user!r} is not numeric non-root"
        assert facts.user == user, f"{where}: the image runs as {facts.user}, the task as {user}"
        for mount in container.get("MountPoints", []):
            path = mount["ContainerPath"]
            assert path in facts.volumes, f"{where}: {path} is mounted but the image declares no VOLUME there"
            assert path in facts.created, f"{where}: no RUN creates {path}"
            assert path in facts.owners, f"{where}: no RUN chowns {path}"
            owner, chowned_at = facts.owners[path]
            assert owner == user, f"{where}: {path} belongs to {owner}, the task runs as {user}"
            assert facts.created[path] <= chowned_at < facts.volumes[path], (
                f"{where}: {path} must be created, then chowned, then declared a VOLUME"
            )


@pytest.mark.parametrize("image", sorted(IMAGE_REPOSITORIES))
def test_no_shipped_run_writes_into_a_volume(image):
    """A RUN after the VOLUME lines (an agent image's `<cli> --version` check) runs in a
    directory of its own outside the volumes, as $HOME and $TMPDIR too (the image's HOME is
    /tmp), and removes it: Docker's BuildKit keeps what a RUN writes into a volume path (it
    would seed every task's volume), buildah and the legacy builder drop it. A tmpfs mount
    over the paths is no way out: buildah 1.28 then drops the directories themselves."""
    facts = image_facts(image)

    def outside(path: str) -> bool:
        return not any(path == v or path.startswith(f"{v}/") for v in facts.volumes)

    for run in facts.runs_after_volumes:
        where = f"{image}: RUN {run.args[:50]!r}"
        steps = commands(run)
        assert not run_mounts(run), f"{where}: no --mount over the volumes"
        (made,) = [c[-1] for c in steps if c[:2] == ["mktemp", "-d"]]
        assert outside(made), f"{where}: its directory {made} is in a volume"
        variable = next(c[0].split("=")[0] for c in steps if c[0].endswith("=$"))
        assert ["cd", f"${variable}"] in steps, f"{where}: does not work in ${variable}"
        prefixes = {token for c in steps for token in c if "=" in token}
        assert {f"HOME=${variable}", f"TMPDIR=${variable}"} <= prefixes, f"{where}: HOME, TMPDIR"
        assert ["rm", "-rf", f"${variable}"] in steps, f"{where}: leaves ${variable} in the image"


def test_the_reader_sees_the_instructions_it_checks():
    """The parser itself: the base image's known lines come out as facts."""
    base = image_facts("base")
    assert base.user == "10001:10001"
    assert {"/workspace"} <= set(base.created) and base.owners["/workspace"][0] == "10001:10001"
    claude = shipped_chain("claude")
    assert claude[0].keyword == "SHELL"  # the base's first instruction opens the claude chain
    assert commands(Instruction("RUN", "--mount=type=tmpfs,target=/tmp a -x && b 'c d'; e")) == [
        ["a", "-x"],
        ["b", "c d"],
        ["e"],
    ]
    assert run_mounts(Instruction("RUN", "--mount=type=tmpfs,target=/tmp a --b")) == [
        "type=tmpfs,target=/tmp"
    ]
