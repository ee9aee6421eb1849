"""Every per-environment setting is read by the app: a setting that is accepted, validated and
committed with a value but changes nothing would mislead the operator who sets it."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from stacks.config import EnvironmentConfig

ROOT = Path(__file__).resolve().parents[2]


def test_every_environment_setting_is_read_outside_its_own_validation() -> None:
    readers = [ROOT / "app.py", *(ROOT / "stacks").glob("*.py"), *(ROOT / "constructs").glob("*.py")]
    text = "\n".join(path.read_text() for path in readers if path.name != "config.py")
    # validate() in config.py reads every field as cfg.<name>; a real reader is elsewhere
    unread = [f.name for f in fields(EnvironmentConfig) if not re.search(rf"\.{f.name}\b", text)]
    assert unread == [], f"settings nothing reads: {unread}"
