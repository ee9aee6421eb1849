"""Every `outpost ...` command the docs and the cdk-nag acknowledgments cite exists in the CLI:
a reason that names a procedure nobody can run is a false reason."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from control_plane.cli import app

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    ROOT / "README.md",
    ROOT / "control_plane" / "README.md",
    *(ROOT / "docs").glob("*.md"),
    *(ROOT / "stacks").glob("*.py"),
    *(ROOT / "constructs").glob("*.py"),
]
# `outpost word [word]`, up to the first option, argument placeholder or closing backtick
CITED = re.compile(r"`(?:\.venv/bin/)?outpost((?: [a-z][a-z-]*){1,2})")


def cited_commands() -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    for path in SOURCES:
        for match in CITED.finditer(path.read_text()):
            found.add(tuple(match.group(1).split()))
    return found


def test_the_scan_finds_the_commands_the_readme_shows() -> None:
    assert ("dev",) in cited_commands()


def test_every_cited_outpost_command_exists() -> None:
    runner = CliRunner()
    missing = []
    for words in sorted(cited_commands()):
        # --help is eager: a command's arguments after it do not matter, unknown commands fail
        if runner.invoke(app, [*words, "--help"]).exit_code != 0:
            missing.append(" ".join(words))
    assert missing == [], f"cited but not in the CLI: {missing}"
