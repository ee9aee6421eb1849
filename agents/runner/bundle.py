"""The result bundle: patch.diff, transcript.txt, summary.json and manifest.json.

The manifest lists the sha256 and size of each other file, so whoever downloads the bundle
can check it is complete and unchanged.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

PATCH = "patch.diff"
TRANSCRIPT = "transcript.txt"
SUMMARY = "summary.json"
MANIFEST = "manifest.json"
FILES = (PATCH, TRANSCRIPT, SUMMARY, MANIFEST)  # upload order: the manifest last


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_manifest(bundle_dir: Path, dispatch_id: str) -> dict[str, Any]:
    files = {}
    for name in (PATCH, TRANSCRIPT, SUMMARY):
        data = (bundle_dir / name).read_bytes()
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest = {"dispatch_id": dispatch_id, "files": files}
    write_json(bundle_dir / MANIFEST, manifest)
    return manifest
