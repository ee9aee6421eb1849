"""Upload URLs against temporary signing credentials: a job that runs to its full timeout can
still upload its bundle.

S3 honours a presigned URL until ``X-Amz-Date + X-Amz-Expires`` and only while the session
that signed it lasts. The moto server checks neither, so ``s3_accepts`` applies that rule to
the URL; the PUT to the emulator then shows the URL is well formed and lands in the attempt's
prefix. Time is a fake clock shared by the signer and the credentials, so the job's production
timeout passes at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.auth
import botocore.session
import httpx
import pytest
from botocore.config import Config
from botocore.credentials import CredentialProvider, RefreshableCredentials

from agents.registry import AGENTS
from agents.runner.timing import UPLOAD_TIMEOUT_S, UPLOAD_URL_TTL_S
from tests.engine.conftest import World

SESSION_S = 3600  # an assumed role's default session
BOTOCORE_MANDATORY_REFRESH_S = RefreshableCredentials._mandatory_refresh_timeout
BOTOCORE_ADVISORY_REFRESH_S = RefreshableCredentials._advisory_refresh_timeout


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Sessions(CredentialProvider):
    """Temporary credentials as a task role hands them out: each session has its own access
    key and lasts SESSION_S from its issue; ``sts_down`` makes renewals fail."""

    METHOD = "outpost-test-sessions"

    def __init__(self, clock: Clock, first_remaining_s: float) -> None:
        self.clock = clock
        self.first_remaining_s = first_remaining_s
        self.expiry: dict[str, datetime] = {}
        self.sts_down = False

    def issue(self, lifetime_s: float = SESSION_S) -> dict[str, Any]:
        key = f"ASIATEST{len(self.expiry):08d}"
        self.expiry[key] = self.clock() + timedelta(seconds=lifetime_s)
        return {
            "access_key": key,
            "secret_key": "secret",
            "token": "token",
            "expiry_time": self.expiry[key].isoformat(),
        }

    def renew(self) -> dict[str, Any]:
        if self.sts_down:
            raise RuntimeError("the credential endpoint does not answer")
        return self.issue()

    def load(self) -> RefreshableCredentials:
        first = self.issue(self.first_remaining_s)
        return RefreshableCredentials(
            first["access_key"],
            first["secret_key"],
            first["token"],
            self.expiry[first["access_key"]],
            self.renew,
            self.METHOD,
            time_fetcher=self.clock,
        )


def s3_accepts(url: str, at: datetime, sessions: Sessions) -> bool:
    query = parse_qs(urlsplit(url).query)
    signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    expires = timedelta(seconds=int(query["X-Amz-Expires"][0]))
    access_key = query["X-Amz-Credential"][0].split("/")[0]
    return at < signed + expires and at < sessions.expiry[access_key]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    # the signer's clock (X-Amz-Date)
    monkeypatch.setattr(
        botocore.auth,
        "get_current_datetime",
        lambda remove_tzinfo=True: clock().replace(tzinfo=None) if remove_tzinfo else clock(),
    )
    return clock


def signing_with(world: World, sessions: Sessions) -> Any:
    """The control plane's S3 client, signing with ``sessions`` instead of static keys."""
    core = botocore.session.Session()
    core.get_component("credential_provider").insert_before("env", sessions)
    config = Config(signature_version="s3v4", s3={"addressing_style": "path"})
    s3 = boto3.session.Session(botocore_session=core, region_name=world.settings.region).client(
        "s3", endpoint_url=world.settings.aws_endpoint_url, config=config
    )
    world.engine.claims.s3 = s3
    return s3


def _claim(world: World, timeout_s: int) -> dict[str, Any]:
    record = world.dispatch("true", timeout_s=timeout_s)
    task, token = world.new_task()
    reply = world.claim(token, task.task_id)
    assert reply.status_code == 200, reply.text
    job = reply.json()
    assert job["dispatch_id"] == record.dispatch_id
    return job


def _upload_urls(world: World, job: dict[str, Any]) -> dict[str, str]:
    reply = world.client.post(
        f"/internal/dispatches/{job['dispatch_id']}/uploads",
        headers={"Authorization": f"Bearer {job['job_token']}"},
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["uploads"]


def test_a_job_being_cancelled_gets_no_upload_urls(world: World):
    job = _claim(world, timeout_s=600)
    record = world.get(job["dispatch_id"])
    assert world.stores.dispatches.request_cancel(
        dispatch_id=job["dispatch_id"], task_id=record.task_id, by="test"
    )
    reply = world.client.post(
        f"/internal/dispatches/{job['dispatch_id']}/uploads",
        headers={"Authorization": f"Bearer {job['job_token']}"},
    )
    assert reply.status_code == 409 and "being cancelled" in reply.json()["detail"], reply.text


def test_a_job_that_ran_its_full_timeout_uploads_through_urls_signed_at_upload(world: World, clock: Clock):
    # At the claim, the control plane's session has just over botocore's advisory refresh
    # window left: botocore signs with it as it is.
    sessions = Sessions(clock, first_remaining_s=BOTOCORE_ADVISORY_REFRESH_S + 60)
    s3 = signing_with(world, sessions)
    timeout_s = AGENTS["shell"].max_timeout_s
    job = _claim(world, timeout_s)
    # what a claim-time URL for the whole job was: it dies with the claim's session
    claim_time_url = s3.generate_presigned_url(
        "put_object",
        Params={"Bucket": world.settings.artifacts_bucket, "Key": "claim-time/patch.diff"},
        ExpiresIn=timeout_s + 900,
    )

    clock.advance(timeout_s + 5)  # the agent ran to its timeout; the runner bundles its work
    uploads = _upload_urls(world, job)
    last_try_ends = clock() + timedelta(seconds=UPLOAD_TIMEOUT_S)

    assert not s3_accepts(claim_time_url, clock(), sessions)
    for name, url in uploads.items():
        assert s3_accepts(url, last_try_ends, sessions), name
        assert httpx.put(url, content=name.encode()).status_code == 200
    listed = world.client.get(
        f"/dispatch/{job['dispatch_id']}/artifacts", headers={"Authorization": f"Bearer {world.api_key}"}
    ).json()["items"]
    assert sorted(item["name"] for item in listed) == sorted(uploads)


def test_an_upload_url_never_outlives_the_session_that_signed_it(world: World, clock: Clock):
    # The worst case: the session is one second short of botocore's mandatory refresh and the
    # advisory refresh fails, so botocore signs with the old session.
    sessions = Sessions(clock, first_remaining_s=BOTOCORE_MANDATORY_REFRESH_S + 1)
    signing_with(world, sessions)
    job = _claim(world, AGENTS["shell"].default_timeout_s)
    sessions.sts_down = True

    uploads = _upload_urls(world, job)

    assert len(sessions.expiry) == 1  # signed with the first session
    assert all(
        s3_accepts(url, clock() + timedelta(seconds=UPLOAD_TIMEOUT_S), sessions) for url in uploads.values()
    )
    # the URLs' lifetime itself ends within any session botocore signs with
    assert UPLOAD_URL_TTL_S <= BOTOCORE_MANDATORY_REFRESH_S
    assert UPLOAD_TIMEOUT_S < UPLOAD_URL_TTL_S
