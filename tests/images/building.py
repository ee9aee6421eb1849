"""Outpost's seven images, built once per test session: the image tests check them, the
end-to-end tests (`outpost dev --runtime container`) run jobs in them.

The build goes through agents/images/scripts/build-images.sh (the same path as `make images`)
with the tag `pytest`; buildah's layer cache and the cached debootstrap base make repeated runs
fast (docs/images.md gives the cold and warm times). The fixtures are session-scoped and
registered by tests/conftest.py; the modules that use them share the "buildah" xdist group, so
one worker builds once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents.registry import IMAGE_REPOSITORIES

ROOT = Path(__file__).resolve().parents[2]
TEST_TAG = "pytest"
# A cold build of the seven images (no layer cached) takes minutes on a loaded 2-core machine;
# the first test to use them waits for it.
BUILD_TIMEOUT_S = 3600
# The extra CA bundle the test builds pass (OUTPOST_BUILD_CA_BUNDLE): the system bundle, which
# the builds need to reach the package registries here, with a line of its own that no image
# may contain. PEM readers skip text outside certificates.
CA_MARKER = "outpost-test-build-ca-bundle-b7e41c"
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture(scope="session")
def storage() -> str:
    """buildah's storage driver, chosen as agents/images/scripts/build-images.sh chooses it."""
    if shutil.which("buildah") is None or shutil.which("debootstrap") is None:
        pytest.fail(
            "buildah and debootstrap are needed to build Outpost's images here: "
            "run agents/images/scripts/install-image-tools.sh (apt packages buildah, debootstrap)"
        )
    result = subprocess.run(
        ["agents/images/scripts/buildah-storage.sh"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="session")
def build_ca_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = tmp_path_factory.mktemp("build-ca") / "bundle.pem"
    bundle.write_text(f"# {CA_MARKER}\n{SYSTEM_CA_BUNDLE.read_text()}")
    return bundle


@pytest.fixture(scope="session")
def built(storage: str, build_ca_bundle: Path) -> dict[str, str]:
    """Builds all seven images with agents/images/scripts/build-images.sh (buildah), as
    `make images` does; image name by image."""
    started = time.monotonic()
    result = subprocess.run(
        ["agents/images/scripts/build-images.sh", *IMAGE_REPOSITORIES],
        cwd=ROOT,
        env={
            **os.environ,
            "ENGINE": "buildah",
            "TAG": TEST_TAG,
            "BUILDAH_STORAGE": storage,
            "OUTPOST_BUILD_CA_BUNDLE": str(build_ca_bundle),
        },
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, f"image build failed after {elapsed:.0f} s:\n{result.stderr[-6000:]}"
    sys.stderr.write(f"\n[tests/images] {len(IMAGE_REPOSITORIES)} images built in {elapsed:.0f} s\n")
    return {name: f"localhost/outpost/{name}:{TEST_TAG}" for name in IMAGE_REPOSITORIES}
