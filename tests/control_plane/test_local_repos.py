"""file:// repositories: local mode with `--allow-local-repos DIR` only, and only inside DIR."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from control_plane.bootstrap import Resources
from control_plane.cli import app as cli
from control_plane.settings import Settings
from tests.control_plane.helpers import settings_for


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    repos = tmp_path / "repos"
    demo = repos / "team" / "demo"
    outside = tmp_path / "private"
    for path in (demo, outside):
        path.mkdir(parents=True)
        subprocess.run(["git", "init", "-q", str(path)], check=True)
    (repos / "escape").symlink_to(outside, target_is_directory=True)
    (repos / "link-in").symlink_to(demo, target_is_directory=True)
    return {"repos": repos, "demo": demo, "outside": outside, "root": tmp_path}


@pytest.fixture
def settings(moto_endpoint: str, shared_resources: Resources, tree: dict[str, Path]) -> Settings:
    return settings_for(moto_endpoint, shared_resources, allow_local_repos=str(tree["repos"]))


def post(client: TestClient, tenant: dict[str, Any], url: str) -> Any:
    return client.post(
        "/dispatch", json={"agent": "shell", "task": "ls", "repo": {"url": url}}, headers=tenant["headers"]
    )


def test_a_repository_inside_the_directory_is_accepted(
    client: TestClient, tenant: dict[str, Any], tree: dict[str, Path]
) -> None:
    for url in (
        f"file://{tree['demo']}",
        f"file://{tree['repos']}/link-in",
        f"file://localhost{tree['demo']}",
    ):
        reply = post(client, tenant, url)
        assert reply.status_code == 202, reply.text
        assert reply.json()["repo"]["url"] == tree["demo"].resolve().as_uri()  # what the runner clones


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("file://{outside}", "local repositories must be inside"),
        ("file://{repos}/../private", "local repositories must be inside"),
        ("file://{repos}/escape", "local repositories must be inside"),
        (
            "file://{repos}/escape/../team/demo",
            "local repositories must be inside",
        ),  # the link resolves first
        ("file://{repos}/missing", "is not a directory"),
        ("file://{repos}", None),  # DIR itself is fine as a path, but names no repository below
        ("file://example.com{repos}/team/demo", "with no host or query"),
        ("file://{repos}/team/demo?x=1", "with no host or query"),
        ("file:///etc", "local repositories must be inside"),
        ("file://{repos}/team%00/demo", "control characters"),
        ("file://{repos}/team%2F..%2F..%2Fprivate", "local repositories must be inside"),
        ("FILE://{outside}", "local repositories must be inside"),
    ],
)
def test_a_repository_outside_the_directory_is_refused(
    client: TestClient, tenant: dict[str, Any], tree: dict[str, Path], where: str, message: str | None
) -> None:
    url = where.format(outside=tree["outside"], repos=tree["repos"])
    reply = post(client, tenant, url)
    if message is None:
        assert reply.status_code == 202, (
            reply.text
        )  # a directory inside DIR: git decides if it is a repository
        return
    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == "repo.url"
    assert message in reply.json()["detail"]


def test_without_the_flag_file_urls_are_refused_as_before(
    moto_endpoint: str, shared_resources: Resources, aws_clients: Any, tree: dict[str, Path]
) -> None:
    from control_plane.main import create_app
    from tests.control_plane.helpers import RecordingTaskControl, make_tenant

    app = create_app(
        settings_for(moto_endpoint, shared_resources),
        task_control=RecordingTaskControl(),
        clients=aws_clients,
    )
    with TestClient(app) as client:
        tenant = make_tenant(client)
        reply = post(client, tenant, f"file://{tree['demo']}")
    assert reply.status_code == 422, reply.text
    assert (
        reply.json()["detail"] == "repo.url: repository URL refused: only https://host/path URLs are allowed"
    )


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_the_setting_is_refused_outside_local_mode(env: str, tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match="OUTPOST_ALLOW_LOCAL_REPOS: file:// repositories are for local mode only"
    ):
        Settings.model_validate({"env": env, "admin_key": "k" * 40, "allow_local_repos": str(tmp_path)})
    with pytest.raises(ValueError, match="for local mode only"):
        Settings.model_validate({"env": "local", "runtime": "ecs", "allow_local_repos": str(tmp_path)})


def test_outpost_dev_refuses_a_directory_that_does_not_exist(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(cli, ["dev", "--allow-local-repos", str(tmp_path / "nope")])
    assert missing.exit_code == 2
