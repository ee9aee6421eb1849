"""A GitHub on loopback, laid out like a GitHub Enterprise Server: repositories served over git's
smart HTTP protocol by the real ``git http-backend`` at ``/<owner>/<name>.git``, and the few REST
API calls publishing makes under ``/api/v3``:

- ``GET /repos/{owner}/{repo}/installation`` and ``POST /app/installations/{id}/access_tokens``
  with the App's JWT, which is verified (RS256 with the App's public key, ``iss``, ``iat``,
  ``exp`` at most 10 minutes out), as GitHub does;
- ``GET /repos/{owner}/{repo}`` and ``POST /repos/{owner}/{repo}/pulls`` with a token.

Installation tokens are scoped as GitHub scopes them: to the repositories and permissions asked
for. A push needs a token with ``contents: write`` for that repository (the runner sends it as
HTTP Basic ``x-access-token:<token>``); a clone is anonymous (public repositories). Every
request and every token handed out is recorded for the tests to inspect.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

APP_ID = "4711"
INSTALLATION_ID = 4242
_GIT_PATH = re.compile(r"^/(?P<owner>[\w.-]+)/(?P<name>[\w.-]+)\.git(?P<rest>/.*)$")
_REPO_API = re.compile(r"^/api/v3/repos/(?P<owner>[\w.-]+)/(?P<name>[\w.-]+)(?P<rest>/[a-z]+)?$")


@dataclass
class Token:
    value: str
    repositories: list[str] | None  # None: the configured token, every repository
    permissions: dict[str, str]


@dataclass
class FakeGitHub:
    root: Path  # bare repositories at root/<owner>/<name>.git
    installed: set[str] = field(default_factory=set)  # "owner/name" the App is installed on
    configured_token: str | None = None  # a token of the operator's, valid for every repository
    tokens: dict[str, Token] = field(default_factory=dict)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    pull_requests: list[dict[str, Any]] = field(default_factory=list)
    pushes: list[dict[str, Any]] = field(default_factory=list)  # repository, token of each push
    requests: list[str] = field(default_factory=list)  # "METHOD path" of every request
    lock: threading.Lock = field(default_factory=threading.Lock)
    tls: ssl.SSLContext | None = None  # serve HTTPS with this server context

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if self.configured_token:
            self.tokens[self.configured_token] = Token(
                self.configured_token, None, {"contents": "write", "pull_requests": "write"}
            )

    @property
    def private_key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def start(self) -> None:
        handler = type("Handler", (_Handler,), {"github": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        scheme = "http"
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.api_url = f"{self.url}/api/v3"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def create_repository(self, full_name: str, *, files: dict[str, str], branch: str = "main") -> Path:
        """A bare repository with one commit of ``files`` on ``branch``; returns its path."""
        bare = self.root / f"{full_name}.git"
        work = self.root / "work" / full_name
        work.mkdir(parents=True)
        for name, text in files.items():
            (work / name).write_text(text)
        for args in (
            ("init", "-q", "-b", branch),
            ("add", "-A"),
            ("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "initial"),
            ("clone", "-q", "--bare", str(work), str(bare)),
        ):
            subprocess.run(["git", *args], cwd=work, check=True, capture_output=True)
        return bare

    # -- what the handler asks -----------------------------------------------------------

    def app_jwt_valid(self, authorization: str | None) -> bool:
        token = (authorization or "").removeprefix("Bearer ")
        try:
            header, claims, signature = token.split(".")
            self.key.public_key().verify(
                _unb64(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
            head, body = json.loads(_unb64(header)), json.loads(_unb64(claims))
        except (ValueError, InvalidSignature):
            return False
        now = time.time()
        return (
            head.get("alg") == "RS256"
            and body.get("iss") == APP_ID
            and body["iat"] <= now
            and now < body["exp"] <= now + 600 + 5
        )

    def token_for(self, authorization: str | None, full_name: str, permission: str) -> Token | None:
        """The token in ``authorization`` if it may use ``permission`` on ``full_name``."""
        value = None
        if authorization and authorization.startswith("Bearer "):
            value = authorization.removeprefix("Bearer ")
        elif authorization and authorization.startswith("Basic "):
            user, _, password = base64.b64decode(authorization.removeprefix("Basic ")).decode().partition(":")
            value = password if user == "x-access-token" else None
        token = self.tokens.get(value or "")
        name = full_name.split("/", 1)[1]
        if token is None or (token.repositories is not None and name not in token.repositories):
            return None
        return token if token.permissions.get(permission) == "write" else None

    def issue(self, body: dict[str, Any]) -> Token:
        token = Token(
            "ghs_" + secrets.token_urlsafe(30),
            list(body.get("repositories") or []),
            dict(body.get("permissions") or {}),
        )
        with self.lock:
            self.tokens[token.value] = token
            self.token_requests.append(body)
        return token


class _Handler(BaseHTTPRequestHandler):
    github: FakeGitHub
    protocol_version = "HTTP/1.0"  # the CGI's output is passed through as it comes

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def _route(self, method: str) -> None:
        github, path = self.github, urlsplit(self.path).path
        with github.lock:
            github.requests.append(f"{method} {path}")
        git = _GIT_PATH.match(path)
        if git:
            return self._git(method, f"{git['owner']}/{git['name']}", git["rest"])
        auth = self.headers.get("Authorization")
        if method == "POST" and path == f"/api/v3/app/installations/{INSTALLATION_ID}/access_tokens":
            if not github.app_jwt_valid(auth):
                return self._json(401, {"message": "A JSON web token could not be decoded"})
            body = json.loads(self._body() or b"{}")
            token = github.issue(body)
            expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
            return self._json(
                201, {"token": token.value, "expires_at": expires, "permissions": token.permissions}
            )
        api = _REPO_API.match(path)
        if api is None:
            return self._json(404, {"message": "Not Found"})
        full_name, rest = f"{api['owner']}/{api['name']}", api["rest"] or ""
        if method == "GET" and rest == "/installation":
            if not github.app_jwt_valid(auth):
                return self._json(401, {"message": "A JSON web token could not be decoded"})
            if full_name not in github.installed:
                return self._json(404, {"message": "Not Found"})
            return self._json(200, {"id": INSTALLATION_ID, "app_id": int(APP_ID)})
        if method == "GET" and rest == "":
            if github.token_for(auth, full_name, "contents") is None:
                return self._json(404, {"message": "Not Found"})
            return self._json(200, {"full_name": full_name, "default_branch": "main"})
        if method == "POST" and rest == "/pulls":
            body = json.loads(self._body() or b"{}")
            if github.token_for(auth, full_name, "pull_requests") is None:
                return self._json(403, {"message": "Resource not accessible by integration"})
            head = subprocess.run(
                ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{body.get('head')}"],
                cwd=github.root / f"{full_name}.git",
                capture_output=True,
            )
            if head.returncode != 0:
                return self._json(422, {"message": "Validation Failed: head"})
            with github.lock:
                github.pull_requests.append({"repository": full_name, "authorization": auth, "body": body})
                number = len(github.pull_requests)
            return self._json(201, {"number": number, "html_url": f"{github.url}/{full_name}/pull/{number}"})
        return self._json(404, {"message": "Not Found"})

    def _git(self, method: str, full_name: str, rest: str) -> None:
        """``git http-backend`` as a CGI; pushes need a token with contents: write."""
        github = self.github
        query = urlsplit(self.path).query
        push = rest.endswith("git-receive-pack") or "service=git-receive-pack" in query
        env = {
            "PATH": "/usr/bin:/bin",
            "GIT_PROJECT_ROOT": str(github.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{full_name}.git{rest}",
            "QUERY_STRING": query,
            "REQUEST_METHOD": method,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        if push:
            token = github.token_for(self.headers.get("Authorization"), full_name, "contents")
            if token is None:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="GitHub"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            env["REMOTE_USER"] = "x-access-token"
            if method == "POST":
                with github.lock:
                    github.pushes.append({"repository": full_name, "token": token.value})
        body = self._body() if method == "POST" else b""
        done = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
