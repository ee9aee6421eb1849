"""`make diff BASE=<ref>`: a real change between two commits, diffed with no AWS credentials.

A clone of this repository gets one more commit that renames the dead-letter queue's construct
(CloudFormation would delete the queue and create an empty one) and opens the agents' security
groups to port 80. The diff against the commit before must name every stack of the stage, call
out the IAM and security group changes, and stop (exit 3) on the stateful deletion unless told
the change is meant.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stacks.diff import BLOCKED, stacks_of

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(900)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def changed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of HEAD plus one commit with the change; the project's Node modules linked in."""
    repo = tmp_path_factory.mktemp("diff") / "repo"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(repo)], check=True)
    (repo / "node_modules").symlink_to(ROOT / "node_modules")
    data = repo / "stacks" / "data.py"
    data.write_text(data.read_text().replace('self, "DeadLetterQueue",', 'self, "DeadLetters",'))
    fleet = repo / "stacks" / "fleet.py"
    fleet.write_text(
        fleet.read_text().replace(
            "        self._endpoint_rules(task_endpoints, secrets_endpoint)\n",
            "        self._endpoint_rules(task_endpoints, secrets_endpoint)\n"
            "        for group in self.agent_security_groups.values():\n"
            '            group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(80), "HTTP")\n',
        )
    )
    assert git(repo, "status", "--porcelain").count(" M ") == 2, "the change no longer applies"
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.invalid"]
    git(repo, *identity, "commit", "--quiet", "-am", "rename the dead-letter queue, open port 80")
    return repo


def make_diff(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # no credentials at all
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # as make puts it
    return subprocess.run(
        [sys.executable, "-m", "stacks.diff", *args], cwd=repo, env=env, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def blocked(changed: Path) -> subprocess.CompletedProcess[str]:
    return make_diff(changed, "--env", "dev", "--base", "HEAD~1")


def test_every_stack_of_the_stage_is_diffed(changed: Path, blocked: subprocess.CompletedProcess[str]):
    commit = git(changed, "rev-parse", "HEAD").strip()
    (assembly,) = (changed / "cdk.out.diff").glob(f"{commit}-*")  # a clean commit's synthesis, kept
    stacks = stacks_of(assembly)
    assert sorted(stacks) == [
        "Dev/Audit",
        "Dev/Data",
        "Dev/Fleet",
        "Dev/Network",
        "Dev/Observability",
        "Dev/Registry",
    ]
    summary = blocked.stdout.split("Summary (stateful resources: stacks/stateful.py):")[1]
    assert [line.split()[0] for line in summary.strip().splitlines()] == sorted(stacks)


def test_a_stateful_deletion_stops_the_diff_and_names_the_resource(blocked: subprocess.CompletedProcess[str]):
    assert blocked.returncode == BLOCKED, blocked.stderr[-3000:]
    line = next(line for line in blocked.stdout.splitlines() if line.strip().startswith("Dev/Data "))
    assert "STATEFUL: DeadLetterQueue9F481546 (deleted)" in line
    assert "ALLOW_STATEFUL_CHANGES=1" in blocked.stderr
    # CDK's own diff is shown above the summary: the queue goes, its new namesake comes
    assert "[-] AWS::SQS::Queue Data/DeadLetterQueue DeadLetterQueue9F481546 destroy" in blocked.stdout


def test_iam_and_security_group_changes_are_called_out(blocked: subprocess.CompletedProcess[str]):
    lines = {line.split()[0]: line for line in blocked.stdout.split("Summary")[1].splitlines()[1:] if line}
    assert "security group changes" in lines["Dev/Fleet"]
    assert "IAM changes" in lines["Dev/Data"] or "IAM changes" in lines["Dev/Fleet"]
    assert "STATEFUL" not in lines["Dev/Fleet"] and lines["Dev/Registry"].split()[1:] == ["-"]


def test_a_meant_change_passes_with_the_flag(changed: Path):
    allowed = make_diff(changed, "--env", "dev", "--base", "HEAD~1", "--allow-stateful-changes")
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert "STATEFUL: DeadLetterQueue9F481546 (deleted)" in allowed.stdout


def test_the_deployed_stacks_without_credentials_is_an_error_that_says_so(changed: Path):
    """No silent "changed" for every stack: CDK cannot read the deployed stacks, and says why."""
    done = make_diff(changed, "--env", "dev")
    assert done.returncode == 1 and "Summary" not in done.stdout
    assert "error: cdk diff Dev/Audit failed (the deployed stacks need AWS credentials" in done.stderr
    assert "Unable to resolve AWS account" in done.stderr
