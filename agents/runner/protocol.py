"""The runner's side of the claim protocol (docs/design.md), over urllib.

``POST /internal/claim`` (claim token), ``POST /internal/dispatches/{id}/logs``,
``.../uploads`` and ``.../result`` (job token), and HTTP PUT of the bundle files to the
presigned URLs that ``.../uploads`` answers with.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from agents.agent_settings import MODEL_ENV, check_model_name
from agents.runner.timing import CLAIM_TIMEOUT_S

USER_AGENT = "outpost-runner"


class ProtocolError(Exception):
    """A request that failed: ``status`` is the HTTP status, or None for a network error."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in (408, 429) or self.status >= 500


@dataclass(frozen=True)
class Repo:
    url: str
    ref: str | None


@dataclass(frozen=True)
class PullRequest:
    title: str
    body: str
    draft: bool


@dataclass(frozen=True)
class Publish:
    """Optional: push the change to ``branch`` (and open a pull request). The claim says what;
    the token comes later, from ``ControlPlane.publish_grant``."""

    branch: str
    pull_request: PullRequest | None

    @classmethod
    def from_claim(cls, value: Any) -> Publish | None:
        if value is None:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("branch"), str) or not value["branch"]:
            raise ValueError("claim answer: field 'publish' must be null or {branch, pull_request}")
        pr = value.get("pull_request")
        if pr is not None:
            if not isinstance(pr, dict) or not isinstance(pr.get("title"), str):
                raise ValueError(
                    "claim answer: field 'publish.pull_request' must be null or {title, body, draft, base}"
                )
            pr = PullRequest(title=pr["title"], body=str(pr.get("body") or ""), draft=pr.get("draft") is True)
        return cls(branch=value["branch"], pull_request=pr)


@dataclass(frozen=True)
class PublishGrant:
    """What the runner pushes with: a short-lived token scoped to the job's repository."""

    token: str
    remote_url: str
    api_url: str  # the repository's API URL, e.g. https://api.github.com/repos/<owner>/<repo>
    base: str | None  # the pull request's base branch

    @classmethod
    def from_answer(cls, value: Any) -> PublishGrant:
        if not isinstance(value, dict) or not all(
            isinstance(value.get(k), str) and value[k] for k in ("token", "remote_url", "api_url")
        ):
            raise ValueError("publish token answer: fields 'token', 'remote_url' and 'api_url' are required")
        base = value.get("base")
        return cls(
            token=value["token"],
            remote_url=value["remote_url"],
            api_url=value["api_url"],
            base=base if isinstance(base, str) and base else None,
        )


@dataclass(frozen=True)
class Job:
    dispatch_id: str
    agent: str
    task: str
    repo: Repo | None
    timeout_s: float
    attempt: int
    job_token: str
    publish: Publish | None = None
    model: str | None = None  # the dispatch's model; None: the agent's configured default
    # The agent's credential for its model calls through the model gateway, valid for this
    # attempt while it runs, and the gateway's URL (None: the control plane's URL + /gateway).
    # None from a control plane without a gateway: the agent keeps the task's own key.
    gateway_token: str | None = None
    gateway_url: str | None = None

    def settings_env(self) -> dict[str, str]:
        """What the job changes in the agent's settings: the dispatch's model replaces the default."""
        return {MODEL_ENV: self.model} if self.model else {}

    @classmethod
    def from_claim(cls, body: Any) -> Job:
        """Validates the claim answer; raises ValueError naming the first bad field."""
        if not isinstance(body, dict):
            raise ValueError("claim answer is not a JSON object")

        def field(name: str, kind: type | tuple[type, ...]) -> Any:
            value = body.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"claim answer: field {name!r} is missing or has the wrong type")
            return value

        repo = body.get("repo")
        if repo is not None:
            if not isinstance(repo, dict) or not isinstance(repo.get("url"), str) or not repo["url"]:
                raise ValueError("claim answer: field 'repo' must be null or {url, ref}")
            ref = repo.get("ref")
            if ref is not None and not isinstance(ref, str):
                raise ValueError("claim answer: field 'repo.ref' must be a string or null")
            repo = Repo(url=repo["url"], ref=ref or None)
        model = body.get("model")
        if model is not None:
            if not isinstance(model, str):
                raise ValueError("claim answer: field 'model' must be a string or null")
            check_model_name(model)  # raises ValueError naming the rule
        gateway: dict[str, str | None] = {}
        for name in ("gateway_token", "gateway_url"):
            value = body.get(name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"claim answer: field {name!r} must be a non-empty string or null")
            gateway[name] = value
        if gateway["gateway_url"] and not gateway["gateway_url"].startswith(("http://", "https://")):
            raise ValueError("claim answer: field 'gateway_url' must be an http(s) URL")
        timeout_s = float(field("timeout_s", (int, float)))
        if timeout_s <= 0:
            raise ValueError("claim answer: field 'timeout_s' must be positive")
        return cls(
            dispatch_id=field("dispatch_id", str),
            agent=field("agent", str),
            task=field("task", str),
            repo=repo,
            timeout_s=timeout_s,
            attempt=int(body.get("attempt") or 1),
            job_token=field("job_token", str),
            publish=Publish.from_claim(body.get("publish")),
            model=model or None,
            gateway_token=gateway["gateway_token"],
            gateway_url=gateway["gateway_url"],
        )


class ControlPlane:
    def __init__(self, base_url: str) -> None:
        self._base = base_url.rstrip("/")

    def claim(self, claim_token: str, task_id: str) -> Job | None:
        """The job, or None when there is none yet (204). Raises ProtocolError otherwise."""
        status, body = _send(
            "POST",
            f"{self._base}/internal/claim",
            token=claim_token,
            payload={"task_id": task_id},
            timeout=CLAIM_TIMEOUT_S,
        )
        if status == 204:
            return None
        try:
            return Job.from_claim(json.loads(body or b"null"))
        except ValueError as exc:
            raise ProtocolError(str(exc), status) from None

    def send_logs(self, job: Job, lines: list[str], *, timeout: float = 10.0) -> None:
        _send(
            "POST",
            self._dispatch_url(job, "logs"),
            token=job.job_token,
            payload={"lines": lines},
            timeout=timeout,
        )

    def upload_urls(self, job: Job, *, timeout: float = 15.0) -> dict[str, str]:
        """Presigned PUT URLs for the bundle files, signed now (they expire in minutes)."""
        _, body = _send("POST", self._dispatch_url(job, "uploads"), token=job.job_token, timeout=timeout)
        uploads = json.loads(body or b"null")
        uploads = uploads.get("uploads") if isinstance(uploads, dict) else None
        if not isinstance(uploads, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in uploads.items()
        ):
            raise ProtocolError("upload URLs answer: field 'uploads' must map file names to URLs", 200)
        return uploads

    def publish_grant(self, job: Job, *, timeout: float = 30.0) -> PublishGrant:
        """The token to publish the job's change with, asked for once the agent is gone."""
        _, body = _send(
            "POST", self._dispatch_url(job, "publish-token"), token=job.job_token, timeout=timeout
        )
        try:
            return PublishGrant.from_answer(json.loads(body or b"null"))
        except ValueError as exc:
            raise ProtocolError(str(exc), 200) from None

    def send_result(self, job: Job, result: dict[str, Any], *, timeout: float = 15.0) -> None:
        _send("POST", self._dispatch_url(job, "result"), token=job.job_token, payload=result, timeout=timeout)

    def _dispatch_url(self, job: Job, what: str) -> str:
        return f"{self._base}/internal/dispatches/{quote(job.dispatch_id, safe='')}/{what}"


def upload(url: str, data: bytes, *, timeout: float) -> None:
    """PUT ``data`` to a presigned URL (no Authorization header: the URL is the credential)."""
    _send("PUT", url, data=data, content_type="application/octet-stream", timeout=timeout)


def post_json(url: str, payload: Any, *, token: str, timeout: float) -> Any:
    """POST ``payload`` as JSON with a bearer token; the decoded JSON answer."""
    _, body = _send(
        "POST", url, token=token, payload=payload, timeout=timeout, accept="application/vnd.github+json"
    )
    return json.loads(body or b"null")


def _send(
    method: str,
    url: str,
    *,
    token: str | None = None,
    payload: Any = None,
    data: bytes | None = None,
    content_type: str = "application/json",
    accept: str | None = None,
    timeout: float,
) -> tuple[int, bytes]:
    if not url.startswith(("http://", "https://")):
        raise ProtocolError(f"refusing a non-HTTP URL for {method}")
    if payload is not None:
        data = json.dumps(payload).encode()
    headers = {"User-Agent": USER_AGENT, "Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if accept is not None:
        headers["Accept"] = accept
    body = data if data is not None else b""
    request = urllib.request.Request(url, data=body, headers=headers, method=method)  # noqa: S310

    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read(500).decode("utf-8", "replace").strip()
        raise ProtocolError(f"{method} {_path(url)}: HTTP {exc.code} {detail}".strip(), exc.code) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        # HTTPException: the answer was cut short (IncompleteRead), as when the control plane
        # dies while sending it; a network error like the others, so the call is retried
        reason = getattr(exc, "reason", exc)
        raise ProtocolError(f"{method} {_path(url)}: {reason}") from None


def _path(url: str) -> str:
    """The URL without its query string: presigned URLs carry signatures there."""
    return url.split("?", 1)[0]
