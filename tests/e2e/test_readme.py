"""The README's local-mode and CLI commands, run as written against a real `outpost dev`.

Each shell block after a `<!-- readme-test ... -->` marker runs in bash (`set -euo pipefail`)
with the three variables `outpost dev` prints, from a scratch directory that has the
checkout's `.venv`; a documented command that stops working fails here. The options of every
other `outpost` command the docs show are checked in tests/control_plane/test_doc_commands.py.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.helpers import Dev

ROOT = Path(__file__).resolve().parents[2]
MARKED = re.compile(r"<!-- readme-test[^>]*-->\s*```sh\n(.*?)```", re.DOTALL)
BLOCKS = MARKED.findall((ROOT / "README.md").read_text())


def test_the_readme_marks_its_local_mode_and_cli_blocks() -> None:
    assert len(BLOCKS) >= 2
    assert any("outpost dispatch --wait" in block for block in BLOCKS)
    assert any("outpost tenants create" in block for block in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_a_readme_block_runs_as_written(dev: Dev, tmp_path: Path, block: str) -> None:
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTPOST_")}
    env |= {
        "OUTPOST_URL": dev.url,
        "OUTPOST_API_KEY": dev.api_key,
        "OUTPOST_ADMIN_KEY": dev.admin_key,
        "HOME": str(tmp_path),  # no config file or ~ of the machine's user
        "XDG_CONFIG_HOME": str(tmp_path / ".config"),
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"{block}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert "Traceback" not in done.stderr and "error" not in done.stderr.lower(), done.stderr
    if "artifacts download" in block:
        assert sorted(p.name for p in (tmp_path / "result").iterdir()) == [
            "manifest.json",
            "patch.diff",
            "summary.json",
            "transcript.txt",
        ]
        assert "+again" in (tmp_path / "result" / "patch.diff").read_text()
