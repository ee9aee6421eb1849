"""Thin helpers around the buildah command and /proc, for the container runtime."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class BuildahError(RuntimeError):
    pass


@dataclass(frozen=True)
class Buildah:
    storage: str

    def __call__(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> str:
        result = subprocess.run(
            ["buildah", "--storage-driver", self.storage, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
        )
        if result.returncode != 0:
            raise BuildahError(f"buildah {args[0]}: {result.stderr.strip()[-500:]}")
        return result.stdout.strip()

    def image_config(self, image: str) -> dict[str, Any] | None:
        """The image's OCI config (Entrypoint, Cmd, Volumes, ...), None when it is not built."""
        try:
            return dict(json.loads(self("inspect", "--type", "image", image))["Docker"]["config"])
        except BuildahError:
            return None

    def run_command(self) -> list[str]:
        return ["buildah", "--storage-driver", self.storage, "run", "--isolation", "chroot"]


def default_storage() -> str:
    """The storage driver the image scripts use (so the images they built are found)."""
    if os.environ.get("BUILDAH_STORAGE"):
        return os.environ["BUILDAH_STORAGE"]
    if shutil.which("buildah") is None:
        raise BuildahError("buildah is not installed: run agents/images/scripts/install-image-tools.sh")
    script = ROOT / "agents" / "images" / "scripts" / "buildah-storage.sh"
    return subprocess.run([str(script)], capture_output=True, text=True, check=True).stdout.strip()


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


def umount(path: str) -> None:
    subprocess.run(["umount", path], capture_output=True, timeout=30)  # gone already is fine


def argv0(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return None


def mount_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def hold_namespace(pid: int) -> tuple[int, str] | None:
    """An open handle on the mount namespace of ``pid``, and the namespace's name
    (``mnt:[inode]``, as /proc/<pid>/ns/mnt reads); None when the process is gone.

    A name alone identifies a namespace only while the namespace exists: the kernel gives a
    freed namespace's inode number to the next namespace created (the lowest free number, so
    in practice the very next one). While the handle is open the namespace is kept, and with
    it its number.
    """
    try:
        fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    return fd, f"mnt:[{os.fstat(fd).st_ino}]"


def in_namespace(namespace: str) -> list[int]:
    """Every process in a mount namespace: a container's processes, orphans included."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and mount_namespace(int(entry.name)) == namespace:
            found.append(int(entry.name))
    return found
