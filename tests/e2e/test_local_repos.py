"""`outpost dev --allow-local-repos DIR` end to end, with the agent settings of local mode.

A real `outpost dev` (emulator, control plane, local runtime, runner) and real git repositories
on disk: a shell dispatch on a file:// repository inside DIR completes with its patch; one
outside DIR (directly, through `..` or through a symlink) or on an `outpost dev` without the
flag is refused with 422 and written nowhere.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import Dev, start_dev, stop_dev

SETTINGS = {
    "shell": {
        "default_model": "local-default",
        "allowed_models": ["local-default", "local-other"],
        "base_url": "https://gateway.example.com/v1",
        "extra": {"SAMPLE_SETTING": "on"},
    }
}
HOST_MARKER = "the-host-environment-leaked"


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=path)
    (path / "README").write_text("hello\n")
    git("add", "README", cwd=path)
    git("-c", "user.name=Seed", "-c", "user.email=seed@example.com", "commit", "-q", "-m", "seed", cwd=path)
    return path


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("local-repos")
    repos = root / "repos"
    demo = make_repo(repos / "demo")
    outside = make_repo(root / "outside" / "private")
    (repos / "escape").symlink_to(outside, target_is_directory=True)
    return {"root": root, "repos": repos, "demo": demo, "outside": outside}


@pytest.fixture(scope="module")
def local_dev(tree: dict[str, Path]) -> Iterator[Dev]:
    state = tree["root"] / "state"
    instance = start_dev(
        state,
        extra_env={
            "OUTPOST_AGENT_SETTINGS": json.dumps(SETTINGS),
            "HOST_ONLY_MARKER": HOST_MARKER,
            "ANTHROPIC_API_KEY": "sk-ant-host-key-0123456789abcdef",
            "PATH": "/usr/local/bin:/usr/bin:/bin",  # no agent CLI but sh and git
        },
        args=("--allow-local-repos", str(tree["repos"])),
    )
    try:
        yield instance
    finally:
        stop_dev(instance)
        shutil.rmtree(state, ignore_errors=True)


def post(dev: Dev, body: dict[str, Any]) -> httpx.Response:
    with dev.client() as client:
        return client.post("/dispatch", json=body)


def count(dev: Dev) -> int:
    with dev.client() as client:
        return len(client.get("/dispatches", params={"limit": 100}).json()["items"])


def artifact(dev: Dev, dispatch_id: str, name: str) -> str:
    with dev.client() as client:
        items = client.get(f"/dispatch/{dispatch_id}/artifacts").json()["items"]
    (item,) = [i for i in items if i["name"].endswith(name)]
    return httpx.get(item["url"], timeout=30).text


def test_shell_dispatch_on_a_local_repository_completes_with_a_patch(
    local_dev: Dev, tree: dict[str, Path]
) -> None:
    repo = {"url": f"file://{tree['demo']}"}
    task = 'echo "$OUTPOST_AGENT_MODEL $OUTPOST_AGENT_BASE_URL $SAMPLE_SETTING" > model.txt; env > env.txt; echo bye >> README'
    chosen = local_dev.dispatch(task, repo=repo, model="local-other")
    default = local_dev.dispatch('echo "$OUTPOST_AGENT_MODEL" > model.txt', repo=repo)  # runs beside it
    assert (chosen["model"], default["model"]) == ("local-other", None)
    assert chosen["repo"]["url"] == tree["demo"].resolve().as_uri()
    for created in (chosen, default):
        done = local_dev.wait_status(created["dispatch_id"], {"COMPLETED", "FAILED", "TIMED_OUT"}, timeout=90)
        assert done["status"] == "COMPLETED", done
    patch = artifact(local_dev, chosen["dispatch_id"], "patch.diff")
    assert "+local-other https://gateway.example.com/v1 on" in patch  # the dispatch's model won
    assert "+bye" in patch and "README" in patch
    assert "+SAMPLE_SETTING=on" in patch
    assert HOST_MARKER not in patch and "ANTHROPIC_API_KEY" not in patch
    assert "+local-default" in artifact(local_dev, default["dispatch_id"], "patch.diff")


@pytest.mark.parametrize(
    "where",
    [
        "{outside}",  # another directory of the host
        "{repos}/../outside/private",  # `..` out of DIR
        "{repos}/escape",  # a symlink inside DIR to a directory outside it
        "{repos}/missing",  # inside DIR, but nothing there
    ],
)
def test_local_repository_outside_the_allowed_directory_is_refused(
    local_dev: Dev, tree: dict[str, Path], where: str
) -> None:
    before = count(local_dev)
    url = "file://" + where.format(outside=tree["outside"], repos=tree["repos"])
    reply = post(local_dev, {"agent": "shell", "task": "ls", "repo": {"url": url}})
    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == "repo.url"
    assert count(local_dev) == before


def test_local_repositories_are_refused_without_the_flag(dev: Dev, tree: dict[str, Path]) -> None:
    reply = post(dev, {"agent": "shell", "task": "ls", "repo": {"url": f"file://{tree['demo']}"}})
    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == "repo.url"
    assert "only https://host/path URLs are allowed" in reply.json()["detail"]


def test_dispatch_for_an_agent_whose_cli_is_missing_is_refused(local_dev: Dev) -> None:
    before = count(local_dev)
    reply = post(local_dev, {"agent": "claude", "task": "fix the bug"})
    assert reply.status_code == 409, reply.text
    assert reply.json()["detail"].startswith(
        "agent 'claude' is not installed on this host: put `claude` on PATH"
    )
    assert count(local_dev) == before


def test_model_the_agent_does_not_allow_is_refused(local_dev: Dev) -> None:
    reply = post(local_dev, {"agent": "shell", "task": "ls", "model": "gpt-5"})
    assert reply.status_code == 422, reply.text
    assert (
        reply.json()["detail"]
        == "model gpt-5 is not allowed for agent shell; it allows local-default, local-other"
    )
