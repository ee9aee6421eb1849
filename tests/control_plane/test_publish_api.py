"""POST /dispatch `publish`: what is accepted, what is refused (422, nothing written), and what
the dispatch shows. The token is never part of any of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from control_plane.aws import AwsClients
from control_plane.bootstrap import Resources
from control_plane.main import create_app
from control_plane.models import MAX_PR_BODY_CHARS, MAX_TITLE_CHARS
from control_plane.settings import Settings
from control_plane.store import Stores
from tests.control_plane.helpers import make_tenant, serving, settings_for

TOKEN = "ghp_configured0123456789abcdef"
OUTPOST = Path(sys.executable).with_name("outpost")
REPO = {"url": "https://github.com/acme/app.git", "ref": "main"}


def _client(
    endpoint: str, resources: Resources, clients: AwsClients, **overrides: Any
) -> Iterator[TestClient]:
    settings = settings_for(endpoint, resources, **overrides)
    with TestClient(create_app(settings, clients=clients), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def publishing(
    moto_endpoint: str, shared_resources: Resources, aws_clients: AwsClients
) -> Iterator[TestClient]:
    yield from _client(moto_endpoint, shared_resources, aws_clients, github_token=TOKEN)


def _post(client: TestClient, tenant: dict, **fields: Any) -> Any:
    body = {"agent": "shell", "task": "echo hi", "repo": REPO, **fields}
    return client.post("/dispatch", json=body, headers=tenant["headers"])


def _count(client: TestClient, tenant: dict) -> int:
    return len(client.get("/dispatches", headers=tenant["headers"]).json()["items"])


def test_publish_is_recorded_with_a_safe_default_branch_and_shown_without_a_token(
    publishing: TestClient,
) -> None:
    tenant = make_tenant(publishing)
    reply = _post(publishing, tenant, publish={"pull_request": {"title": "Fix the build", "draft": True}})
    assert reply.status_code == 202, reply.text
    body = reply.json()
    assert body["publish"] == {
        "branch": f"outpost/{body['dispatch_id']}",
        "pull_request": {"title": "Fix the build", "body": "", "draft": True, "base": None},
        "result": None,
    }
    stores: Stores = publishing.app.state.stores  # type: ignore[attr-defined]
    record = stores.dispatches.get(dispatch_id=body["dispatch_id"], tenant_id=None)
    assert record is not None and record.publish == {
        "branch": f"outpost/{body['dispatch_id']}",
        "pull_request": {"title": "Fix the build", "body": "", "draft": True, "base": None},
    }
    assert TOKEN not in repr(record) and TOKEN not in reply.text
    shown = publishing.get(f"/dispatch/{body['dispatch_id']}", headers=tenant["headers"]).json()
    assert shown["publish"] == body["publish"]


def test_publish_takes_a_named_branch_and_a_title_of_the_longest_length(publishing: TestClient) -> None:
    tenant = make_tenant(publishing)
    title, text = "t" * MAX_TITLE_CHARS, "b" * MAX_PR_BODY_CHARS
    reply = _post(
        publishing,
        tenant,
        publish={
            "branch": "outpost/fix-1.2_x",
            "pull_request": {"title": title, "body": text, "base": "release/2"},
        },
    )
    assert reply.status_code == 202, reply.text
    assert reply.json()["publish"]["branch"] == "outpost/fix-1.2_x"
    assert reply.json()["publish"]["pull_request"]["base"] == "release/2"


BAD_PUBLISH = [
    ({"branch": "-delete"}, "publish.branch"),
    ({"branch": "a..b"}, "publish.branch"),
    ({"branch": "refs/heads/x"}, "publish.branch"),
    ({"branch": "HEAD"}, "publish.branch"),
    ({"branch": "feature/x.lock"}, "publish.branch"),
    ({"branch": "feature/.hidden"}, "publish.branch"),
    ({"branch": "with space"}, "publish.branch"),
    ({"branch": "a@{1}"}, "publish.branch"),
    ({"branch": "x" * 201}, "publish.branch"),
    ({"branch": "main"}, "publish.branch"),  # the branch the change starts from
    ({"branch": "dev", "pull_request": {"title": "t", "base": "dev"}}, "publish.branch"),
    ({"pull_request": {"title": ""}}, "publish.pull_request.title"),
    ({"pull_request": {"title": "   "}}, "publish.pull_request.title"),
    ({"pull_request": {"title": "two\nlines"}}, "publish.pull_request.title"),
    ({"pull_request": {"title": "t" * (MAX_TITLE_CHARS + 1)}}, "publish.pull_request.title"),
    ({"pull_request": {"title": "t", "body": "b" * (MAX_PR_BODY_CHARS + 1)}}, "publish.pull_request.body"),
    ({"pull_request": {"title": "t", "draft": "yes"}}, "publish.pull_request.draft"),
    ({"pull_request": {"title": "t", "base": "--force"}}, "publish.pull_request.base"),
    ({"pull_request": {}}, "publish.pull_request.title"),
    ({"token": "mine"}, "publish.token"),
    ({"remote_url": "https://evil.example/x.git"}, "publish.remote_url"),
]


@pytest.mark.parametrize(("publish", "field"), BAD_PUBLISH)
def test_refuse_a_bad_publish_naming_the_field(publishing: TestClient, publish: dict, field: str) -> None:
    tenant = make_tenant(publishing)
    reply = _post(publishing, tenant, publish=publish)
    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == field
    assert _count(publishing, tenant) == 0


@pytest.mark.parametrize(
    "repo",
    [None, {"url": "https://gitlab.com/acme/app.git"}, {"url": "https://github.com/acme/app/tree/main"}],
)
def test_refuse_publishing_without_a_repository_on_the_configured_github(
    publishing: TestClient, repo: dict | None
) -> None:
    tenant = make_tenant(publishing)
    body = {"agent": "shell", "task": "x", "publish": {}, **({"repo": repo} if repo else {})}
    reply = publishing.post("/dispatch", json=body, headers=tenant["headers"])
    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == "publish"
    assert "https://github.com" in reply.json()["detail"]
    assert _count(publishing, tenant) == 0


def test_refuse_publishing_where_it_is_not_set_up(client: TestClient, tenant: dict) -> None:
    reply = _post(client, tenant, publish={})
    assert reply.status_code == 422, reply.text
    assert (reply.json()["field"], "not set up" in reply.json()["detail"]) == ("publish", True)
    assert _count(client, tenant) == 0


def test_the_configured_github_may_live_on_a_private_address(
    moto_endpoint: str, shared_resources: Resources, aws_clients: AwsClients
) -> None:
    """A GitHub Enterprise Server inside the network: its repositories pass the address checks
    that every other host must pass."""
    for client in _client(
        moto_endpoint, shared_resources, aws_clients, github_url="http://127.0.0.1:9", github_token=TOKEN
    ):
        tenant = make_tenant(client)
        inside = {"url": "http://127.0.0.1:9/acme/app.git", "ref": "main"}
        assert _post(client, tenant, repo=inside, publish={}).status_code == 202
        for other in (
            "http://127.0.0.1:10/acme/app.git",
            "https://127.0.0.1/acme/app.git",
            "http://127.0.0.1:9/x",
            "http://127.0.0.1:9/acme/app\n.git",  # on the configured host, but with a newline
        ):
            reply = _post(client, tenant, repo={"url": other})
            assert reply.status_code == 422, (other, reply.text)
            assert reply.json()["field"] == "repo.url"


def test_settings_refuse_plain_http_github_outside_local_mode() -> None:
    base = {"env": "dev", "admin_key": "k" * 40}
    with pytest.raises(ValueError, match="https:// outside local mode"):
        Settings.model_validate({**base, "github_url": "http://ghe.corp.example"})
    with pytest.raises(ValueError, match="both or neither"):
        Settings.model_validate({**base, "github_app_id": "1"})
    assert Settings.model_validate({**base, "github_url": "https://ghe.corp.example"})


def test_the_cli_dispatches_with_publish(publishing: TestClient) -> None:
    tenant = make_tenant(publishing)
    with serving(publishing.app) as (host, port):
        env = {**os.environ, "OUTPOST_URL": f"http://{host}:{port}", "OUTPOST_API_KEY": tenant["api_key"]}
        args = ["dispatch", "make test", "--repo", REPO["url"], "--ref", "main", "--branch", "fix/x"]
        done = subprocess.run(
            [str(OUTPOST), *args, "--pr-title", "Fix x", "--draft", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["publish"] == {
            "branch": "fix/x",
            "pull_request": {"title": "Fix x", "body": "", "draft": True, "base": None},
            "result": None,
        }
        done = subprocess.run(
            [str(OUTPOST), "dispatch", "x", "--repo", REPO["url"], "--publish", "--branch", "a..b"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 1 and "error 422: publish.branch" in done.stderr
