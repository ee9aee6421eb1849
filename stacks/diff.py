"""`make diff`: what deploying this tree would change, stack by stack, in every selected stage.

Every stack of Outpost lives in a Stage (Dev, Staging, Prod), and `cdk diff` without stack
selectors diffs only top-level stacks: it would report no difference for any change. This
tool names every stack of the selected stages, and:

- ``--base REF`` (no AWS credentials): synthesizes the git revision REF (a temporary worktree)
  and this tree, and diffs each stack's template against REF's with ``cdk diff --template``
  (a stack new in this tree against an empty template);
- without it: diffs each stack against the deployed one (credentials for the account needed).

CDK's own output shows IAM statement and security group changes in tables; the summary at the
end names, per stack, whether IAM or security groups change and which stateful resources
(stacks/stateful.py) would be replaced or deleted. Such a change exits 3 unless
``--allow-stateful-changes`` says it is meant; any other difference exits 0 (a pull request
shows it, it does not block it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from stacks.stateful import STATEFUL

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "cdk.out.diff"  # git-ignored: the assemblies diffed (a clean commit's are reused)
CDK = ROOT / "node_modules" / ".bin" / "cdk"
DIFF_WORKERS = 4
BLOCKED = 3  # the exit code of a change to a stateful resource that was not allowed
_IAM = re.compile(r"^IAM (Statement|Policy) Changes", re.MULTILINE)
_SECURITY_GROUPS = re.compile(r"^Security Group Changes", re.MULTILINE)
# How CDK's diff ends a resource's line when the change loses the resource's data: a removal
# ("destroy", or "orphan" under a Retain policy: kept, but no longer deployed) or a replacement.
_IMPACT = re.compile(r"\s(destroy|orphan|replace|may be replaced)\s*$")
_IMPACTS = {
    "destroy": "deleted",
    "orphan": "orphaned",
    "replace": "replaced",
    "may be replaced": "may be replaced",
}


@dataclass(frozen=True)
class Stack:
    path: str  # "Dev/Fleet": what `cdk diff` selects
    template: Path

    @property
    def name(self) -> str:  # "Fleet": the key of stacks/stateful.py
        return self.path.split("/", 1)[1]


@dataclass
class StackDiff:
    path: str
    output: str = ""
    changed: bool = False
    iam: bool = False
    security_groups: bool = False
    stateful: list[str] = field(default_factory=list)  # "ArtifactsBucket88671897 (replaced)"
    note: str = ""  # "new stack", "deleted stack"


def stacks_of(assembly: Path) -> dict[str, Stack]:
    """Every stack of every stage in a synthesized cloud assembly, by its path."""
    found: dict[str, Stack] = {}
    for manifest in sorted(assembly.glob("assembly-*/manifest.json")):
        for artifact in json.loads(manifest.read_text())["artifacts"].values():
            if artifact["type"] == "aws:cloudformation:stack":
                path = artifact["displayName"]
                found[path] = Stack(path, manifest.parent / artifact["properties"]["templateFile"])
    return found


def synthesize(tree: Path, commit: str | None, envs: str | None) -> tuple[Path, dict[str, Stack]]:
    """``cdk synth`` of the project at ``tree`` with this project's Python and CDK CLI (a
    worktree of another revision has neither); the assembly's directory and its stacks.

    ``commit``: the tree is exactly that commit (a clean checkout), so a synthesis of it with the
    same selection and default account is reused (running the diff again after labelling a
    pull request costs no synthesis). None: a working tree with changes, always synthesized."""
    key = json.dumps([envs, os.environ.get("CDK_DEFAULT_ACCOUNT"), os.environ.get("CDK_DEFAULT_REGION")])
    out = OUT / (f"{commit}-{hashlib.sha256(key.encode()).hexdigest()[:12]}" if commit else "head")
    if commit and (out / "manifest.json").is_file():
        return out, stacks_of(out)
    partial = out.with_name(out.name + ".partial")  # renamed once complete: never reused half-written
    shutil.rmtree(partial, ignore_errors=True)
    command = [str(CDK), "synth", "--quiet", "--app", f"{sys.executable} app.py", "--output", str(partial)]
    if envs:
        command += ["-c", f"env={envs}"]
    result = subprocess.run(command, cwd=tree, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"error: cdk synth of {tree} failed:\n{result.stderr[-4000:]}")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out, stacks_of(out)


def clean_commit(tree: Path) -> str | None:
    """The commit ``tree`` is checked out at, if no tracked file differs from it."""
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=tree, capture_output=True, text=True
    )
    if changed.returncode != 0 or changed.stdout.strip():
        return None
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tree, capture_output=True, text=True
    ).stdout.strip()


@contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """The git revision ``ref`` checked out in a temporary directory."""
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if commit.returncode != 0:
        raise SystemExit(f"error: BASE={ref} is not a commit of this repository")
    with tempfile.TemporaryDirectory(prefix="outpost-diff-") as parent:
        tree = Path(parent) / "base"
        subprocess.run(
            ["git", "worktree", "add", "--quiet", "--detach", str(tree), commit.stdout.strip()],
            cwd=ROOT,
            check=True,
        )
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)


def cdk_diff(assembly: Path, stack: str, template: Path | None) -> str:
    """`cdk diff` of one stack of ``assembly``: against ``template``, or the deployed stack."""
    command = [str(CDK), "diff", "--app", str(assembly), "--no-color", "--exclusively", stack]
    if template is not None:
        command += ["--template", str(template)]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "CI": "true"}
    )
    output = result.stdout + result.stderr
    # 1 means "there are differences"; a diff that never got to the stack (no credentials for
    # its account, say) prints no "Stack ..." header, whatever its exit code
    if result.returncode not in (0, 1) or f"Stack {stack}" not in output:
        hint = "" if template else " (the deployed stacks need AWS credentials; BASE=<git ref> needs none)"
        raise SystemExit(f"error: cdk diff {stack} failed{hint}:\n{output.strip()[-2000:]}")
    return output


def stateful_changes(stack: str, output: str, head: dict | None, base: dict | None) -> list[str]:
    """The stack's stateful resources that the change replaces or deletes: gone from the new
    template, or marked ``replace`` by CDK (a property that cannot change in place changed)."""
    changes = []
    for logical_id in STATEFUL.get(stack, {}):
        if base is not None and logical_id not in base.get("Resources", {}):
            continue  # not deployed by the base revision: nothing to lose
        impacts = (_IMPACT.search(line) for line in output.splitlines() if logical_id in line.split())
        impact = next((found.group(1) for found in impacts if found), None)
        if impact is not None:
            changes.append(f"{logical_id} ({_IMPACTS[impact]})")
        elif base is not None and (head is None or logical_id not in head.get("Resources", {})):
            changes.append(f"{logical_id} (deleted)")  # its whole stack goes
    return changes


def diff_stacks(head_out: Path, head: dict[str, Stack], base: dict[str, Stack] | None) -> list[StackDiff]:
    empty = OUT / "empty.template.json"
    empty.write_text('{"Resources": {}}')

    def one(path: str) -> StackDiff:
        diff = StackDiff(path)
        new = head.get(path)
        old = base.get(path) if base is not None else None
        if new is None:
            diff.note = "deleted stack"
            diff.output = f"Stack {path}: deleted (it is in the base revision only)\n"
        else:
            if base is not None and old is None:
                diff.note = "new stack"
            diff.output = cdk_diff(head_out, path, None if base is None else (old.template if old else empty))
        diff.changed = "There were no differences" not in diff.output
        diff.iam = bool(_IAM.search(diff.output))
        diff.security_groups = bool(_SECURITY_GROUPS.search(diff.output))
        diff.stateful = stateful_changes(
            path.split("/", 1)[1],
            diff.output,
            json.loads(new.template.read_text()) if new else None,
            json.loads(old.template.read_text()) if old else None,
        )
        return diff

    # one CDK CLI per stack (it diffs one template at a time), a few at once: most of each is
    # the CLI's own start-up
    with ThreadPoolExecutor(max_workers=DIFF_WORKERS) as pool:
        return list(pool.map(one, sorted(set(head) | set(base or {}))))


def summary(diffs: Sequence[StackDiff]) -> str:
    lines = ["", "Summary (stateful resources: stacks/stateful.py):"]
    for diff in diffs:
        flags = [diff.note or "changed"] if diff.changed else []
        flags += ["IAM changes"] if diff.iam else []
        flags += ["security group changes"] if diff.security_groups else []
        flags += [f"STATEFUL: {', '.join(diff.stateful)}"] if diff.stateful else []
        lines.append(f"  {diff.path:<22} {'; '.join(flags) or '-'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make diff", description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", help="stages to diff: dev, staging, prod, or a comma-separated list")
    parser.add_argument("--base", help="a git revision to diff against, with no AWS credentials")
    parser.add_argument(
        "--allow-stateful-changes",
        action="store_true",
        help="exit 0 even when a stateful resource would be replaced or deleted",
    )
    args = parser.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    head_out, head = synthesize(ROOT, clean_commit(ROOT), args.env)
    base = None
    if args.base:
        with worktree(args.base) as tree:
            _, base = synthesize(tree, clean_commit(tree), args.env)
    diffs = diff_stacks(head_out, head, base)
    for diff in diffs:
        print(diff.output.rstrip())
    print(summary(diffs))
    blocked = [f"{d.path}: {item}" for d in diffs for item in d.stateful]
    if blocked and not args.allow_stateful_changes:
        print(
            f"\nerror: {len(blocked)} stateful resource(s) would be replaced or deleted; "
            "if that is meant, run again with ALLOW_STATEFUL_CHANGES=1 (make) / --allow-stateful-changes",
            file=sys.stderr,
        )
        return BLOCKED
    return 0


if __name__ == "__main__":
    sys.exit(main())
