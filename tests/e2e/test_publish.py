"""Publishing end to end: `outpost dev` (emulator, control plane, local runtime, real runner)
against a GitHub on loopback (tests/emulators/github.py): repositories over git's smart HTTP
protocol (the real `git http-backend`) and the REST API, with a GitHub App whose JWT the fake
verifies.

A shell dispatch with `publish` pushes its change to the branch and opens the pull request with
an installation token limited to that repository; the token exists only after the agent ended
(it is in no process's environment while the agent runs), and it appears in no agent file, log,
artifact, dispatch record or control-plane log.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import TERMINAL, Dev, start_dev, stop_dev
from tests.emulators.github import APP_ID, FakeGitHub


@pytest.fixture(scope="module")
def github(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(root=tmp_path_factory.mktemp("github"), installed={"acme/app"})
    fake.start()
    fake.create_repository("acme/app", files={"README.md": "app\n"})
    fake.create_repository("acme/private", files={"README.md": "private\n"})  # the App is not installed
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def publishing_dev(github: FakeGitHub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    state = tmp_path_factory.mktemp("publish-dev") / "state"
    instance = start_dev(
        state,
        extra_env={
            "OUTPOST_GITHUB_URL": github.url,
            "OUTPOST_GITHUB_API_URL": github.api_url,
            "OUTPOST_GITHUB_APP_ID": APP_ID,
            "OUTPOST_GITHUB_APP_PRIVATE_KEY": github.private_key_pem,
        },
    )
    try:
        yield instance
    finally:
        stop_dev(instance)
        shutil.rmtree(state, ignore_errors=True)


def _git(bare: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=bare, check=True, capture_output=True, text=True).stdout.strip()


def _everything_a_tenant_or_operator_sees(dev: Dev, dispatch_ids: list[str]) -> str:
    seen = []
    with dev.client() as client:
        seen.append(client.get("/dispatches").text)
        for dispatch_id in dispatch_ids:
            seen.append(client.get(f"/dispatch/{dispatch_id}").text)
            seen.append(client.get(f"/dispatch/{dispatch_id}/logs").text)
            for item in client.get(f"/dispatch/{dispatch_id}/artifacts").json()["items"]:
                seen.append(httpx.get(item["url"], timeout=30).text)
    seen.append(dev.stderr_path.read_text(errors="replace"))  # control plane, engine and runner logs
    for path in dev.state_dir.rglob("*"):
        if path.is_file():
            seen.append(path.read_text(errors="replace"))
    return "\n".join(seen)


@pytest.fixture(scope="module")
def runs(
    publishing_dev: Dev, github: FakeGitHub, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict]:
    """Three publishing dispatches, run at once; their final states by name."""
    spy = tmp_path_factory.mktemp("agent")
    # While the agent runs: its environment, and every environment it can read in /proc.
    task = (
        f"env > {spy}/agent.env; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c ghs_ > {spy}/agent.procs; "
        "echo 'hello from outpost' > greeting.txt"
    )
    created = {
        "pull_request": publishing_dev.dispatch(
            task,
            repo={"url": f"{github.url}/acme/app.git", "ref": "main"},
            publish={
                "branch": "outpost/greeting",
                "pull_request": {"title": "Add a greeting", "body": "Written by an agent.", "draft": True},
            },
        ),
        "push_only": publishing_dev.dispatch(
            "echo change > change.txt", repo={"url": f"{github.url}/acme/app.git"}, publish={}
        ),
        "no_app": publishing_dev.dispatch(
            "echo change > change.txt",
            repo={"url": f"{github.url}/acme/private.git"},
            publish={"branch": "feature/x"},
        ),
    }
    finals = {
        name: publishing_dev.wait_status(c["dispatch_id"], TERMINAL, timeout=90)
        for name, c in created.items()
    }
    finals["spy"] = {"dir": str(spy)}
    return finals


def _token(github: FakeGitHub, *, pull_requests: bool) -> str:
    (token,) = [
        t.value
        for t in github.tokens.values()
        if t.repositories == ["app"] and ("pull_requests" in t.permissions) == pull_requests
    ]
    return token


def test_publish_pushes_the_branch_and_opens_a_draft_pull_request_with_a_repository_token(
    publishing_dev: Dev, github: FakeGitHub, runs: dict[str, dict]
) -> None:
    final = runs["pull_request"]
    assert final["status"] == "COMPLETED", final
    bare = github.root / "acme/app.git"
    pushed = _git(bare, "rev-parse", "refs/heads/outpost/greeting")
    assert _git(bare, "rev-parse", f"{pushed}^") == _git(bare, "rev-parse", "refs/heads/main")
    assert _git(bare, "show", f"{pushed}:greeting.txt") == "hello from outpost"
    assert _git(bare, "log", "-1", "--format=%s", pushed) == "Add a greeting"
    # A token limited to this repository and to what publishing needs; the push and the pull
    # request used it.
    assert {"repositories": ["app"], "permissions": {"contents": "write", "pull_requests": "write"}} in (
        github.token_requests
    )
    token = _token(github, pull_requests=True)
    assert {"repository": "acme/app", "token": token} in github.pushes
    assert github.pull_requests == [
        {
            "repository": "acme/app",
            "authorization": f"Bearer {token}",
            "body": {
                "title": "Add a greeting",
                "head": "outpost/greeting",
                "base": "main",
                "body": "Written by an agent.",
                "draft": True,
            },
        }
    ]
    assert final["publish"]["result"] == {
        "branch": "outpost/greeting",
        "commit": pushed,
        "pull_request_url": f"{github.url}/acme/app/pull/1",
        "error": None,
    }
    # The token never reached the agent, nor anything anyone reads.
    spy = Path(runs["spy"]["dir"])
    assert "ghs_" not in (spy / "agent.env").read_text()
    assert (spy / "agent.procs").read_text().strip() == "0"
    seen = _everything_a_tenant_or_operator_sees(
        publishing_dev, [runs[name]["dispatch_id"] for name in ("pull_request", "push_only", "no_app")]
    )
    assert token not in seen and _token(github, pull_requests=False) not in seen


def test_publish_without_a_pull_request_pushes_a_default_branch_with_a_push_only_token(
    github: FakeGitHub, runs: dict[str, dict]
) -> None:
    final = runs["push_only"]
    assert final["status"] == "COMPLETED", final
    branch = f"outpost/{final['dispatch_id']}"
    assert final["publish"]["branch"] == branch and final["publish"]["result"]["error"] is None
    assert _git(github.root / "acme/app.git", "show", f"{branch}:change.txt") == "change"
    assert {"repositories": ["app"], "permissions": {"contents": "write"}} in github.token_requests
    assert {"repository": "acme/app", "token": _token(github, pull_requests=False)} in github.pushes
    assert len(github.token_requests) == 2  # none for the repository without the App


def test_a_repository_without_the_app_completes_with_the_publish_error_and_nothing_pushed(
    publishing_dev: Dev, github: FakeGitHub, runs: dict[str, dict]
) -> None:
    final = runs["no_app"]
    assert final["status"] == "COMPLETED", final  # the patch is in the bundle all the same
    error = final["publish"]["result"]["error"]
    assert "no publishing token" in error and "installation on acme/private: HTTP 404" in error, error
    assert _git(github.root / "acme/private.git", "branch", "--list", "feature/x") == ""
    assert not [p for p in github.pushes if p["repository"] == "acme/private"]
    with publishing_dev.client() as client:
        names = [i["name"] for i in client.get(f"/dispatch/{final['dispatch_id']}/artifacts").json()["items"]]
    assert "patch.diff" in names
