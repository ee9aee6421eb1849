"""The GitHub workflows (.github/workflows): actionlint clean (with shellcheck on every `run:`),
every action pinned to a commit, AWS through OIDC only, and the roles they assume as the CI
stack (stacks/ci.py) trusts them: the diff outside any environment (subject `pull_request`),
each deploy inside its stage's environment, dev before staging before prod."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacks.config import ENVIRONMENTS

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$")


def load(name: str) -> dict[Any, Any]:
    # PyYAML reads the key `on` as True (YAML 1.1); the workflows' keys are read as written
    text = (ROOT / ".github" / "workflows" / name).read_text()
    return yaml.load(text, Loader=yaml.BaseLoader)  # noqa: S506 - BaseLoader makes only str, list, dict


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_the_workflows_exist() -> None:
    assert [path.name for path in WORKFLOWS] == ["deploy-stage.yml", "deploy.yml", "pull-request.yml"]


def test_actionlint_and_shellcheck_find_nothing() -> None:
    for tool in ("actionlint", "shellcheck"):  # requirements.lock installs both
        assert (BIN / tool).is_file(), f"{tool} is not installed: run make setup"
    done = subprocess.run(
        [str(BIN / "actionlint"), "-no-color", "-oneline", "-verbose", *map(str, WORKFLOWS)],
        cwd=ROOT,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert 'Rule "shellcheck" was disabled' not in done.stderr  # the scripts were checked too


def test_actionlint_would_catch_an_injected_title(tmp_path: Path) -> None:
    """The check is real: a pull request's title in a script is refused."""
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    subprocess.run(["git", "init", "--quiet", str(tmp_path)], check=True)
    (tmp_path / ".github" / "workflows" / "bad.yml").write_text(
        "on: pull_request\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n"
    )
    done = subprocess.run(
        [str(BIN / "actionlint"), "-no-color", "-oneline"],
        cwd=tmp_path,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "potentially untrusted" in done.stdout


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_and_no_key_is_stored(path: Path) -> None:
    workflow = load(path.name)
    for step in steps(workflow):
        if "uses" in step:
            assert PINNED.match(step["uses"]), f"{path.name}: {step['uses']} is not pinned to a commit"
    text = path.read_text()
    assert "aws-access-key-id" not in text and "secrets.AWS" not in text
    assert workflow["permissions"] == {"contents": "read"}  # more only where a job needs it


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_only_jobs_that_assume_an_aws_role_get_an_oidc_token(path: Path) -> None:
    for name, job in load(path.name)["jobs"].items():
        assumes = any("configure-aws-credentials" in step.get("uses", "") for step in job.get("steps", []))
        calls_a_deploy = job.get("uses") == "./.github/workflows/deploy-stage.yml"
        token = job.get("permissions", {}).get("id-token") == "write"
        assert token == (assumes or calls_a_deploy), f"{path.name}: job {name}"


def test_the_diff_runs_outside_environments_with_the_label_as_the_only_way_past_a_stateful_change() -> None:
    workflow = load("pull-request.yml")
    diff = workflow["jobs"]["diff"]
    assert "environment" not in diff  # the DiffRole trusts the subject repo:<r>:pull_request
    assert diff["strategy"]["matrix"]["stage"] == list(ENVIRONMENTS)
    run = next(step for step in diff["steps"] if step.get("id") == "diff")
    assert 'make diff ENV="$STAGE" ALLOW_STATEFUL_CHANGES="$ALLOW"' in run["run"]
    assert "'allow-stateful-changes'" in run["env"]["ALLOW"]
    assert set(workflow["on"]["pull_request"]["types"]) >= {"labeled", "unlabeled", "synchronize"}
    comment = workflow["jobs"]["comment"]
    assert comment["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert "updateComment" in steps({"jobs": {"c": comment}})[-1]["with"]["script"]


def test_each_stage_deploys_in_its_environment_after_the_one_before() -> None:
    deploy = load("deploy.yml")
    assert deploy["on"]["push"]["branches"] == ["main"]
    assert deploy["concurrency"]["cancel-in-progress"] == "false"
    jobs = deploy["jobs"]
    assert list(jobs) == list(ENVIRONMENTS)
    for before, after in zip(ENVIRONMENTS, ENVIRONMENTS[1:], strict=False):
        assert jobs[after]["needs"] == before
    for stage, job in jobs.items():
        assert job["with"] == {"stage": stage}
    (job,) = load("deploy-stage.yml")["jobs"].values()
    assert job["environment"] == "${{ inputs.stage }}"  # the DeployRole trusts repo:<r>:environment:<stage>
    assert "make deploy" in steps({"jobs": {"d": job}})[-1]["run"]


def test_the_make_targets_the_workflows_run_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in ("lint", "test", "diff", "images", "deploy"):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target
    assert shutil.which("make") is not None
