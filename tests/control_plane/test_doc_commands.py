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
# An invocation: in inline code (`outpost ...`) or a command line of a fenced block
INLINE = re.compile(r"`((?:\.venv/bin/)?outpost [^`]+)`")
LINE = re.compile(r"^\s*(?:[a-z_]+=\$\()?((?:\.venv/bin/)?outpost .*)$", re.MULTILINE)
GROUPS = {"artifacts", "tenants"}


def cited_invocations() -> set[tuple[tuple[str, ...], frozenset[str]]]:
    """(command words, the options used) of every `outpost` command the sources show."""
    found = set()
    for path in SOURCES:
        text = path.read_text()
        for match in [*INLINE.finditer(text), *LINE.finditer(text)]:
            command = match.group(1).split(" #")[0]
            words = command.split()[1:]
            if not words or not re.fullmatch(r"[a-z][a-z-]*", words[0]):
                continue
            path_words = tuple(words[:2]) if words[0] in GROUPS and len(words) > 1 else (words[0],)
            options = frozenset(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-[a-z])\b", command))
            found.add((path_words, options))
    return found


def cited_commands() -> set[tuple[str, ...]]:
    return {words for words, _ in cited_invocations()}


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


def test_every_option_the_docs_use_exists() -> None:
    runner = CliRunner()
    unknown = []
    for words, options in sorted(cited_invocations(), key=str):
        shown = runner.invoke(app, [*words, "--help"], terminal_width=400).output
        unknown += [
            f"outpost {' '.join(words)} {option}" for option in sorted(options) if option not in shown
        ]
    assert unknown == [], f"options the docs use that the CLI does not have: {unknown}"


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
