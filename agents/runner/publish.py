"""Optional: push the job's change to a branch and open a pull request (claim field ``publish``).

Runs after the agent's process group is gone, only for a COMPLETED job with a non-empty patch;
only then does the runner ask the control plane for the token (``publish_grant``), which is
scoped to the job's repository and short-lived. The token never enters the agent's repository
or any command line: the change is committed
in the agent's repository (hooks and signing off), fetched into a bare repository the runner
creates, and pushed from there with the token in an ``http.extraHeader`` passed through the
environment of that one git process. The agent's ``.git/config`` (proxies, ``insteadOf``
rewrites, credential helpers) is never read by a command that holds the token.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agents.runner.protocol import ProtocolError, Publish, PublishGrant, post_json
from agents.runner.redact import Redactor
from agents.runner.workspace import AUTHOR, CheckoutError, Git, protocol_options, valid_ref


@dataclass(frozen=True)
class Published:
    branch: str
    commit: str | None = None
    pull_request_url: str | None = None
    error: str | None = None

    def to_summary(self) -> dict[str, str | None]:
        return {
            "branch": self.branch,
            "commit": self.commit,
            "pull_request_url": self.pull_request_url,
            "error": self.error,
        }


def publish(
    spec: Publish,
    grant: PublishGrant,
    *,
    repo_dir: Path,
    scratch: Path,
    env: Mapping[str, str],
    deadline: float,
    stop: threading.Event,
    redact: Redactor,
    message: str,
) -> Published:
    url = grant.remote_url
    if url.startswith("-"):
        return Published(spec.branch, error="no repository to push to")
    if not valid_ref(spec.branch):
        return Published(spec.branch, error=f"invalid branch name {spec.branch!r}")
    agent_repo = Git(repo_dir, env=env, deadline=deadline, stop=stop, redact=redact)
    commit = None
    try:
        agent_repo.run(
            "-c", f"user.name={AUTHOR[0]}", "-c", f"user.email={AUTHOR[1]}", "-c", "commit.gpgsign=false",
            "commit", "--quiet", "--no-verify", "-m", message,
        )  # fmt: skip
        commit = agent_repo.out("rev-parse", "HEAD")
        clean_dir = scratch / "publish.git"
        Git(clean_dir, env=env, deadline=deadline, stop=stop, redact=redact).run(
            "init", "--quiet", "--bare", str(clean_dir), cwd=scratch
        )
        clean = Git(
            clean_dir, env=_with_token(env, url, grant.token), deadline=deadline, stop=stop, redact=redact
        )
        clean.run(
            "-c", "protocol.file.allow=always", "fetch", "--quiet", "--no-tags", str(repo_dir),
            f"HEAD:refs/heads/{spec.branch}",
        )  # fmt: skip
        clean.run(
            *protocol_options(url),
            "push",
            "--quiet",
            url,
            f"refs/heads/{spec.branch}:refs/heads/{spec.branch}",
        )
    except CheckoutError as exc:
        return Published(spec.branch, commit=commit, error=str(exc).replace("checkout", "publish"))
    except Exception as exc:  # noqa: BLE001 - stopped or deadline: the job's result still goes out
        return Published(spec.branch, commit=commit, error=f"push stopped: {type(exc).__name__}")
    if spec.pull_request is None:
        return Published(spec.branch, commit=commit)
    pr = spec.pull_request
    if grant.base is None:
        return Published(spec.branch, commit=commit, error="pull request: no base branch")
    try:
        answer = post_json(
            f"{grant.api_url.rstrip('/')}/pulls",
            {"title": pr.title, "head": spec.branch, "base": grant.base, "body": pr.body, "draft": pr.draft},
            token=grant.token,
            timeout=30,
        )
    except ProtocolError as exc:
        return Published(spec.branch, commit=commit, error=redact(f"pull request: {exc}"))
    html_url = answer.get("html_url") if isinstance(answer, dict) else None
    return Published(
        spec.branch, commit=commit, pull_request_url=html_url if isinstance(html_url, str) else None
    )


def _with_token(env: Mapping[str, str], url: str, token: str) -> dict[str, str]:
    result = dict(env)
    if url.startswith(("https://", "http://")):
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        result.update(
            GIT_CONFIG_COUNT="1",
            GIT_CONFIG_KEY_0="http.extraHeader",
            GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}",
        )
    return result
