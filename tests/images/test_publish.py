"""agents/images/scripts/publish-images.sh against stand-ins for the AWS CLI and buildah: which repository each
image goes to, under which tag, and what it refuses. No AWS endpoint is reached."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
TAG = "0123456789ab"
REGISTRY = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
# What the dev registry stack's describe-stack-resources lists (logical id, repository name).
STACK_REPOSITORIES = {
    "RepositoriesBase7080043A": "dev-registry-repositoriesbase-1a2b",
    "RepositoriesClaudeD81F7054": "dev-registry-repositoriesclaude-3c4d",
    "RepositoriesCodex60CB8494": "dev-registry-repositoriescodex-5e6f",
    "RepositoriesGeminiEB81AEAE": "dev-registry-repositoriesgemini-7a8b",
    "RepositoriesAiderAA1EC740": "dev-registry-repositoriesaider-9c0d",
    "RepositoriesGrok6E59FD20": "dev-registry-repositoriesgrok-1e2f",
    "RepositoriesControlPlaneA6BFDD34": "dev-registry-repositoriescontrolplane-3a4b",
}

AWS_STUB = r"""#!/usr/bin/env bash
echo "aws $*" >>"$CALLS"
case "$1 $2" in
"sts get-caller-identity") echo "$STUB_ACCOUNT" ;;
"cloudformation describe-stack-resources") cat "$STUB_RESOURCES" ;;
"ecr get-login-password") echo not-a-real-password ;;
"ecr describe-images")
    for published in $STUB_PUBLISHED; do
        [[ " $* " == *" --repository-name $published "* ]] && exit 0
    done
    exit 254 ;;
*) exit 2 ;;
esac
"""
BUILDAH_STUB = r"""#!/usr/bin/env bash
echo "buildah $*" >>"$CALLS"
[[ " $* " == *" login "* ]] && cat >/dev/null
exit 0
"""


@pytest.fixture
def stubs(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("aws", AWS_STUB), ("buildah", BUILDAH_STUB)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    resources = tmp_path / "resources.txt"
    resources.write_text("".join(f"{k}\t{v}\n" for k, v in STACK_REPOSITORIES.items()))
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(tmp_path / "calls.log"),
        "STUB_ACCOUNT": ACCOUNT,
        "STUB_RESOURCES": str(resources),
        "STUB_PUBLISHED": "",
        "ENGINE": "buildah",
        "BUILDAH_STORAGE": "vfs",
        "TAG": TAG,
    }


def publish(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    result = subprocess.run(
        ["agents/images/scripts/publish-images.sh", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls_file = Path(env["CALLS"])
    calls = calls_file.read_text().splitlines() if calls_file.exists() else []
    return result, calls


def test_pushes_every_image_under_its_sha_to_its_repository(stubs: dict[str, str]) -> None:
    result, calls = publish(stubs, "dev")
    assert result.returncode == 0, result.stderr
    pushes = [c for c in calls if c.startswith("buildah") and " push " in c]
    expected = {
        f"localhost/outpost/{image}:{TAG} docker://{REGISTRY}/{repo}:{TAG}"
        for image, repo in (
            ("base", "dev-registry-repositoriesbase-1a2b"),
            ("claude", "dev-registry-repositoriesclaude-3c4d"),
            ("codex", "dev-registry-repositoriescodex-5e6f"),
            ("gemini", "dev-registry-repositoriesgemini-7a8b"),
            ("aider", "dev-registry-repositoriesaider-9c0d"),
            ("grok", "dev-registry-repositoriesgrok-1e2f"),
            ("control-plane", "dev-registry-repositoriescontrolplane-3a4b"),
        )
    }
    assert {p.split(" v2s2 ", 1)[1] for p in pushes} == expected
    login = next(i for i, c in enumerate(calls) if " login " in c)
    assert f"--password-stdin {REGISTRY}" in calls[login]
    assert login < calls.index(pushes[0])
    assert any("--stack-name Dev-Registry" in c for c in calls)
    assert f"deploy with: make deploy ENV=dev IMAGE_TAG={TAG}" in result.stdout


def test_an_image_already_published_is_skipped(stubs: dict[str, str]) -> None:
    stubs["STUB_PUBLISHED"] = "dev-registry-repositoriesbase-1a2b"
    result, calls = publish(stubs, "dev", "base", "control-plane")
    assert result.returncode == 0, result.stderr
    pushes = [c for c in calls if " push " in c]
    assert len(pushes) == 1 and "control-plane" in pushes[0]
    assert "already published" in result.stderr


@pytest.mark.parametrize("tag", [f"{TAG}-dirty", "latest"])
def test_refuses_a_tag_that_is_not_a_commit(stubs: dict[str, str], tag: str) -> None:
    stubs["TAG"] = tag
    result, calls = publish(stubs, "dev")
    assert result.returncode != 0 and "refusing" in result.stderr
    assert not [c for c in calls if " push " in c]


def test_refuses_credentials_for_another_account(stubs: dict[str, str]) -> None:
    result, calls = publish(stubs, "prod")  # cdk.json puts prod in its own account
    assert result.returncode != 0 and "account" in result.stderr
    assert not [c for c in calls if " push " in c]


def test_needs_the_registry_stack_first(stubs: dict[str, str]) -> None:
    Path(stubs["STUB_RESOURCES"]).write_text("")
    result, calls = publish(stubs, "dev", "base")
    assert result.returncode != 0 and "deploy it first" in result.stderr
    assert not [c for c in calls if " push " in c]
