"""A small control plane for the runner's tests: the claim protocol of docs/design.md over
real HTTP on loopback, plus a PUT target standing in for the presigned upload URLs (a URL is
valid for ``url_ttl_s`` after the runner asked for it, as S3 honours a presigned URL).

It records every request so tests can assert on what the runner sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CLAIM_TOKEN = "claim-7f3a9c1e5b2d4f6a8c0e"  # noqa: S105 - test value
JOB_TOKEN = "job-2b4d6f8a0c1e3g5i7k9m"  # noqa: S105 - test value
BUNDLE_FILES = ("patch.diff", "transcript.txt", "summary.json", "manifest.json")


def make_job(
    task: str, *, agent: str = "shell", repo: dict[str, Any] | None = None, timeout_s: float = 30
) -> dict:
    return {
        "dispatch_id": "d-0001",
        "agent": agent,
        "task": task,
        "repo": repo,
        "timeout_s": timeout_s,
        "attempt": 1,
        "job_token": JOB_TOKEN,
    }


@dataclass
class FakeControlPlane:
    job: dict[str, Any] | None
    empty_claims: int = 0  # 204 answers before the job is handed out
    claim_token: str = CLAIM_TOKEN
    on_logs: Callable[[list[str]], None] | None = None
    claims: list[dict[str, Any]] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)
    result_received: threading.Event = field(default_factory=threading.Event)
    pull_requests: list[dict[str, Any]] = field(default_factory=list)  # the fake GitHub API's
    publish_grant: dict[str, Any] | None = None  # the answer to .../publish-token
    grant_requests: list[float] = field(default_factory=list)  # when the runner asked for it
    refuse_uploads: bool = False  # answer 403 to every PUT, as S3 does for an expired URL
    url_ttl_s: float = 600.0
    url_requests: list[float] = field(default_factory=list)  # when the runner asked for URLs
    url_outages: int = 0  # answer 503 to this many requests for URLs (a restarting control plane)
    spent: bool = False
    claim_poll_s: float = 0.05  # how long an empty claim is held, as the real long poll holds it

    def start(self) -> None:
        handler = type("Handler", (_Handler,), {"plane": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def result(self) -> dict[str, Any]:
        assert len(self.results) == 1, f"expected one result, got {self.results}"
        return self.results[0]

    def claim_answer(self) -> tuple[int, dict[str, Any] | None]:
        if self.empty_claims > 0 or self.job is None:
            self.empty_claims -= 1
            return 204, None
        self.spent = True
        return 200, self.job

    def upload_urls(self) -> dict[str, Any]:
        signed = time.time()
        self.url_requests.append(signed)
        assert self.job is not None
        uploads = {
            name: f"{self.url}/uploads/{self.job['dispatch_id']}/{name}?X-Signature=abc&signed={signed}"
            for name in BUNDLE_FILES
        }
        return {"uploads": uploads, "expires_in_s": self.url_ttl_s}


class _Handler(BaseHTTPRequestHandler):
    plane: FakeControlPlane

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, body: dict[str, Any] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _bearer(self) -> str | None:
        value = self.headers.get("Authorization", "")
        return value.removeprefix("Bearer ") if value.startswith("Bearer ") else None

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        plane = self.plane
        body = json.loads(self._body() or b"{}")
        if self.path == "/internal/claim":
            plane.claims.append(body)
            if self._bearer() != plane.claim_token or plane.spent:
                return self._reply(401, {"title": "unknown or spent claim token"})
            status, job = plane.claim_answer()
            if status == 204:
                time.sleep(plane.claim_poll_s)
            return self._reply(status, job)
        if self.path.startswith("/github/repos/") and self.path.endswith("/pulls"):
            plane.pull_requests.append({"authorization": self.headers.get("Authorization"), "body": body})
            return self._reply(201, {"number": 7, "html_url": "https://github.example/o/r/pull/7"})
        dispatch = plane.job["dispatch_id"] if plane.job else None
        if self._bearer() != JOB_TOKEN:
            return self._reply(401, {"title": "bad job token"})
        if self.path == f"/internal/dispatches/{dispatch}/logs":
            plane.log_lines.extend(body["lines"])
            if plane.on_logs:
                plane.on_logs(body["lines"])
            return self._reply(204)
        if self.path == f"/internal/dispatches/{dispatch}/uploads":
            if plane.url_outages > 0:
                plane.url_outages -= 1
                return self._reply(503, {"title": "Service Unavailable"})
            return self._reply(200, plane.upload_urls())
        if self.path == f"/internal/dispatches/{dispatch}/publish-token":
            plane.grant_requests.append(time.time())
            if plane.publish_grant is None:
                return self._reply(409, {"title": "this dispatch publishes nothing"})
            return self._reply(200, plane.publish_grant)
        if self.path == f"/internal/dispatches/{dispatch}/result":
            plane.results.append(body)
            plane.result_received.set()
            return self._reply(204)
        return self._reply(404, {"title": "not found"})

    def do_PUT(self) -> None:  # noqa: N802
        path, _, query = self.path.partition("?")
        prefix = f"/uploads/{self.plane.job['dispatch_id'] if self.plane.job else ''}/"
        if self.plane.refuse_uploads or not path.startswith(prefix) or "X-Signature=abc" not in query:
            return self._reply(403, {"title": "bad signature"})
        signed = float(query.rpartition("signed=")[2] or 0)
        if time.time() > signed + self.plane.url_ttl_s:
            return self._reply(403, {"title": "Request has expired"})
        self.plane.uploads[path.removeprefix(prefix)] = self._body()
        return self._reply(200)


def runner_env(
    plane: FakeControlPlane, workspace: Path, *, agent: str = "shell", **extra: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTPOST_")}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        OUTPOST_CONTROL_PLANE_URL=plane.url,
        OUTPOST_CLAIM_TOKEN=plane.claim_token,
        OUTPOST_AGENT=agent,
        OUTPOST_TASK_ID="task-0001",
        OUTPOST_WORKSPACE=str(workspace),
        OUTPOST_IDLE_TIMEOUT_S="5",
        OUTPOST_KILL_GRACE_S="1",
        OUTPOST_STOP_BUDGET_S="30",
    )
    env.update(extra)
    return env


def start_runner(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agents.runner", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_runner(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = start_runner(env, *args)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"runner did not exit within {timeout} s; stderr:\n{err}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def process_gone(pid: int) -> bool:
    """True when no process, not even a zombie, has this pid."""
    return not Path(f"/proc/{pid}").exists()


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()
