"""agents/images/scripts/build-images.sh against stand-ins for docker and buildah: every build,
with either engine, gets the extra CA bundle (OUTPOST_BUILD_CA_BUNDLE, by default the system
bundle) as the build-time secret `ca`, and a bundle that cannot be read stops the build before it
starts. The real buildah builds with the secret are in tests/images/test_images.py."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGES = ("base", "claude", "aider")  # no control-plane: an online build would drop its wheelhouse
BUILDS = len(IMAGES) + 1  # base is built twice: outpost/base-system (its `system` stage), outpost/base

# Each stand-in records its arguments, one call a line; `docker info` answers, nothing exists yet.
STUB = r"""#!/usr/bin/env bash
echo "$(basename "$0") $*" >>"$CALLS"
case "$1" in
image) exit 1 ;;
inspect) exit 1 ;;
esac
exit 0
"""


@pytest.fixture
def stub_env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("docker", "buildah"):
        path = bin_dir / name
        path.write_text(STUB)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return {
        **{k: v for k, v in os.environ.items() if k != "OUTPOST_BUILD_CA_BUNDLE"},
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(tmp_path / "calls.log"),
        "TAG": "0123456789ab",
        "BUILDAH_STORAGE": "vfs",
        "OUTPOST_OFFLINE": "0",
    }


def build(env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    result = subprocess.run(
        ["agents/images/scripts/build-images.sh", *IMAGES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = Path(env["CALLS"])
    lines = calls.read_text().splitlines() if calls.exists() else []
    builds = [
        line.split()
        for line in lines
        if line.startswith(("docker build ", "buildah --storage-driver vfs bud "))
    ]
    return result, builds


def secrets_of(call: list[str]) -> list[str]:
    return [call[i + 1] for i, arg in enumerate(call) if arg == "--secret"]


@pytest.mark.parametrize("engine", ["docker", "buildah"])
def test_every_build_gets_the_system_bundle_as_the_ca_secret_by_default(stub_env, engine) -> None:
    assert SYSTEM_CA_BUNDLE.is_file()
    result, builds = build({**stub_env, "ENGINE": engine})
    assert result.returncode == 0, result.stderr
    assert len(builds) == BUILDS, builds
    for call in builds:
        assert secrets_of(call) == [f"id=ca,src={SYSTEM_CA_BUNDLE.resolve()}"], call


@pytest.mark.parametrize("engine", ["docker", "buildah"])
def test_the_ca_bundle_named_by_the_variable_is_the_secret(stub_env, engine, tmp_path) -> None:
    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_text(SYSTEM_CA_BUNDLE.read_text())
    result, builds = build({**stub_env, "ENGINE": engine, "OUTPOST_BUILD_CA_BUNDLE": str(bundle)})
    assert result.returncode == 0, result.stderr
    assert [secrets_of(call) for call in builds] == [[f"id=ca,src={bundle}"]] * BUILDS


def test_none_passes_no_secret(stub_env) -> None:
    result, builds = build({**stub_env, "ENGINE": "docker", "OUTPOST_BUILD_CA_BUNDLE": "none"})
    assert result.returncode == 0, result.stderr
    assert len(builds) == BUILDS and all(secrets_of(call) == [] for call in builds), builds


@pytest.mark.parametrize("content", [None, ""], ids=["missing", "empty"])
def test_a_bundle_that_cannot_be_read_stops_before_any_build(stub_env, tmp_path, content) -> None:
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_text(content)
    result, builds = build({**stub_env, "ENGINE": "docker", "OUTPOST_BUILD_CA_BUNDLE": str(bundle)})
    assert result.returncode == 1
    assert f"OUTPOST_BUILD_CA_BUNDLE={bundle} is not a readable, non-empty file" in result.stderr
    assert builds == []
