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


# The CDK CLI is reached only through make (the pinned CLI on the project's Node): no doc or
# script may show another way to run it.
CDK_DOCS = [
    ROOT / "README.md",
    *ROOT.glob("*/README.md"),
    *(ROOT / "docs").glob("*.md"),
    *(ROOT / "agents" / "images" / "scripts").glob("*.sh"),
    *(ROOT / ".github" / "workflows").glob("*.yml"),
]
# "npx cdk ...", "node_modules/.bin/cdk ...", `cdk deploy X` inline or `cdk ...` starting a line;
# a bare `cdk diff` names the command in prose and runs nothing
OTHER_CDK = re.compile(r"npx cdk|node_modules/\.bin/cdk|`cdk [a-z]+ [^`]+`|^\s*(?:\$ )?cdk [a-z]+")
# `make target` in inline code, or at the start of a command in a fenced block
INLINE_MAKE = re.compile(r"`make ([a-z][a-z0-9-]*)")
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
BLOCK_MAKE = re.compile(r"(?:^|&& |; )\s*make ([a-z][a-z0-9-]*)", re.MULTILINE)


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), flags=re.MULTILINE))


def cited_make_targets() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in [ROOT / "README.md", *ROOT.glob("*/README.md"), *(ROOT / "docs").glob("*.md")]:
        text = path.read_text()
        targets = set(INLINE_MAKE.findall(text))
        for block in FENCE.findall(text):
            targets |= set(BLOCK_MAKE.findall(block))
        found[str(path.relative_to(ROOT))] = targets
    return found


def test_the_docs_run_the_cdk_cli_only_through_make() -> None:
    offending = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in CDK_DOCS
        for line in path.read_text().splitlines()
        if OTHER_CDK.search(line)
    ]
    assert offending == []


def test_the_scan_finds_the_make_targets_the_readme_shows() -> None:
    readme = cited_make_targets()["README.md"]
    assert {"bootstrap", "deploy", "deploy-ci", "outputs", "diagram", "images", "synth"} <= readme


def test_every_make_target_the_docs_cite_exists() -> None:
    targets = makefile_targets()
    missing = {doc: sorted(cited - targets) for doc, cited in cited_make_targets().items() if cited - targets}
    assert missing == {}, f"cited but not in the Makefile: {missing}"
