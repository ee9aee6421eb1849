"""What a dispatch may name: the repository it checks out and the branch it publishes to.

These checks depend on the control plane's settings (local repositories, the operator's
GitHub), so the route runs them, not the API model. A refusal is a 422 naming the field;
nothing is written before they pass.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from agents.egress import host_allowed, merged
from agents.registry import AGENTS
from control_plane.github import GitHub, repository_of
from control_plane.models import DispatchCreate
from control_plane.problems import Problem
from control_plane.settings import Settings
from control_plane.validation import (
    UnsafeRepoError,
    check_local_repo_url,
    check_repo_resolution,
    check_repo_url,
    is_local_repo_url,
)


def accepted_repo_url(url: str, settings: Settings, *, agent: str) -> str:
    """The repository URL to record; a 422 Problem when it is refused. Resolves names: call it
    from a worker thread, never the event loop."""
    try:
        if is_local_repo_url(url):
            return check_local_repo_url(url, settings.allow_local_repos)
        if repository_of(url, github_url=settings.github_url) is not None:
            # The operator's own GitHub: its address is their choice (a GitHub Enterprise
            # Server often has a private one), and settings refuse http:// outside local mode.
            check_egress(url, settings, agent=agent)
            return url
        check_repo_url(url)
        check_egress(url, settings, agent=agent)
        check_repo_resolution(url)
        return url
    except UnsafeRepoError as error:
        raise Problem(
            422, "Invalid Request", f"repo.url: repository URL refused: {error}", field="repo.url"
        ) from None


def check_egress(url: str, settings: Settings, *, agent: str) -> None:
    """Refuse a repository on a host the agent's tasks cannot reach: the environment's egress
    allowlist plus the agent's own additions, the registry's and its agent settings' (the egress
    proxy's list for the agent, docs/egress.md). No allowlist (local mode): any."""
    if settings.egress_allowlist is None:
        return
    allowed = merged(
        settings.egress_allowlist,
        AGENTS[agent].egress if agent in AGENTS else (),
        settings.settings_of(agent).egress if agent in AGENTS else (),
    )
    host = (urlsplit(url).hostname or "").rstrip(".")
    if not host_allowed(host, allowed):
        shown = ", ".join(allowed) or "nothing"
        raise UnsafeRepoError(
            f"host {host} is not on the egress allowlist, so agent tasks cannot reach it "
            f"(egress_allowlist in cdk.json, OUTPOST_EGRESS_ALLOWLIST; {agent} may reach {shown})"
        )


def check_publish(body: DispatchCreate, *, repo_url: str | None, settings: Settings) -> None:
    """Refuse (422) a ``publish`` this control plane cannot carry out."""
    spec = body.publish
    if spec is None:
        return
    if repo_url is None or repository_of(repo_url, github_url=settings.github_url) is None:
        raise Problem(
            422, "Invalid Request",
            f"publish: needs a repo on {settings.github_url} (<github>/<owner>/<name>)", field="publish",
        )  # fmt: skip
    if not GitHub.from_settings(settings).configured:
        raise Problem(
            422, "Invalid Request",
            "publish: publishing is not set up on this control plane (docs/publishing.md)", field="publish",
        )  # fmt: skip
    start = {body.repo.ref if body.repo else None, spec.pull_request.base if spec.pull_request else None}
    if spec.branch is not None and spec.branch in start:
        raise Problem(
            422, "Invalid Request",
            f"publish.branch: {spec.branch} is the branch the change starts from or goes into; name a new one",
            field="publish.branch",
        )  # fmt: skip


def publish_record(body: DispatchCreate, *, dispatch_id: str) -> dict[str, Any] | None:
    """The record's ``publish``: the branch defaults to one no person would name."""
    if body.publish is None:
        return None
    pull_request = body.publish.pull_request
    return {
        "branch": body.publish.branch or f"outpost/{dispatch_id}",
        "pull_request": pull_request.model_dump() if pull_request else None,
    }
