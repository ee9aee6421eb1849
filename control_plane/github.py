"""Publishing credentials: a token a runner pushes one repository's branch with.

With a GitHub App configured, each token is an installation token (GitHub's REST API:
``GET /repos/{owner}/{repo}/installation``, then ``POST /app/installations/{id}/access_tokens``
with ``repositories: [repo]`` and only the permissions publishing needs): it works for that
one repository, for one hour. Without an App the configured token serves every publish; it
reaches whatever its owner can reach until someone revokes it (docs/publishing.md).

The runner asks for the token after its agent's processes are gone (control_plane.api.routes.
internal), so no agent process ever runs while it exists in the task.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from control_plane.settings import Settings

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
API_VERSION = "2022-11-28"
JWT_LIFETIME_S = 540  # GitHub accepts at most 10 minutes; iat is set 60 s back for clock drift


class PublishingError(Exception):
    """GitHub refused or could not be reached; the message holds no secret."""


@dataclass(frozen=True)
class Repository:
    owner: str
    name: str

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


def repository_of(url: str, *, github_url: str) -> Repository | None:
    """The repository ``url`` names when it is ``<github_url>/<owner>/<name>[.git]``; else None."""
    if len(url) > 2048 or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        return None  # urlsplit would silently drop tabs and newlines, which git would not
    parts, host = urlsplit(url), urlsplit(github_url)
    if (parts.scheme.lower(), parts.netloc.lower()) != (host.scheme.lower(), host.netloc.lower()):
        return None
    if parts.query or parts.fragment:
        return None
    prefix = host.path.rstrip("/") + "/"
    if not parts.path.startswith(prefix):
        return None
    segments = parts.path[len(prefix) :].rstrip("/").split("/")
    if len(segments) != 2:
        return None
    owner, name = segments[0], segments[1].removesuffix(".git")
    if not all(_NAME.match(s) and s not in (".", "..") for s in (owner, name)):
        return None
    return Repository(owner, name)


@dataclass(frozen=True)
class Grant:
    token: str
    api_url: str  # the repository's API URL: <api>/repos/<owner>/<name>
    expires_at: str | None  # GitHub's ISO time; None for the configured token


@dataclass
class GitHub:
    api_url: str
    app_id: str | None = None
    private_key: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0
    clock: Callable[[], float] = time.time

    @classmethod
    def from_settings(cls, settings: Settings) -> GitHub:
        return cls(
            api_url=settings.github_api_url.rstrip("/"),
            app_id=settings.github_app_id,
            private_key=settings.github_app_private_key.get_secret_value()
            if settings.github_app_private_key
            else None,
            token=settings.github_token.get_secret_value() if settings.github_token else None,
        )

    @property
    def configured(self) -> bool:
        return bool(self.app_id and self.private_key) or bool(self.token)

    def grant(self, repo: Repository, *, pull_request: bool) -> Grant:
        """A token for pushing to ``repo`` (and opening a pull request there, if asked)."""
        api_url = f"{self.api_url}/repos/{quote(repo.owner)}/{quote(repo.name)}"
        if not (self.app_id and self.private_key):
            if not self.token:
                raise PublishingError("publishing is not set up on this control plane")
            return Grant(token=self.token, api_url=api_url, expires_at=None)
        app = {"Authorization": f"Bearer {self._app_jwt()}"}
        installation = self._call(
            "GET", f"{api_url}/installation", app, what=f"the App's installation on {repo.full_name}"
        )
        installation_id = installation.get("id")
        if not isinstance(installation_id, int) or isinstance(installation_id, bool):
            raise PublishingError(f"GitHub named no installation of the App on {repo.full_name}")
        permissions = {"contents": "write", **({"pull_requests": "write"} if pull_request else {})}
        answer = self._call(
            "POST",
            f"{self.api_url}/app/installations/{installation_id}/access_tokens",
            app,
            what=f"a token for {repo.full_name}",
            body={"repositories": [repo.name], "permissions": permissions},
        )
        token, expires_at = answer.get("token"), answer.get("expires_at")
        if not isinstance(token, str) or not token:
            raise PublishingError(f"GitHub answered without a token for {repo.full_name}")
        return Grant(
            token=token, api_url=api_url, expires_at=expires_at if isinstance(expires_at, str) else None
        )

    def default_branch(self, grant: Grant) -> str | None:
        answer = self._call(
            "GET", grant.api_url, {"Authorization": f"Bearer {grant.token}"}, what="the repository"
        )
        branch = answer.get("default_branch")
        return branch if isinstance(branch, str) and branch else None

    def _app_jwt(self) -> str:
        """The App's JSON Web Token (RS256), as GitHub's "Generating a JWT for a GitHub App" describes."""
        assert self.app_id and self.private_key
        try:
            key = serialization.load_pem_private_key(self.private_key.encode(), password=None)
        except (ValueError, TypeError):
            raise PublishingError(
                "the GitHub App's private key is not a PEM key without a password"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise PublishingError("the GitHub App's private key is not an RSA key")
        now = int(self.clock())
        header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
        claims = _b64(json.dumps({"iat": now - 60, "exp": now + JWT_LIFETIME_S, "iss": self.app_id}).encode())
        signature = key.sign(f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{claims}.{_b64(signature)}"

    def _call(
        self, method: str, url: str, headers: dict[str, str], *, what: str, body: Any = None
    ) -> dict[str, Any]:
        headers = {**headers, "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION}
        try:
            reply = httpx.request(method, url, headers=headers, json=body, timeout=self.timeout_s)
        except httpx.HTTPError as error:
            raise PublishingError(f"GitHub could not be reached for {what}: {type(error).__name__}") from None
        if reply.status_code >= 300:
            message = ""
            try:
                message = str(reply.json().get("message", ""))[:200]
            except ValueError:
                pass
            raise PublishingError(f"GitHub refused {what}: HTTP {reply.status_code} {message}".rstrip())
        answer = reply.json()
        if not isinstance(answer, dict):
            raise PublishingError(f"GitHub answered {what} with something other than an object")
        return answer


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
