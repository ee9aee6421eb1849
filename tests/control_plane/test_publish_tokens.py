"""control_plane/github.py against the loopback GitHub (tests/emulators/github.py): which token a
runner gets to publish with, and how GitHub's refusals come back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.github import JWT_LIFETIME_S, GitHub, PublishingError, Repository, repository_of
from tests.emulators.github import APP_ID, FakeGitHub


@pytest.fixture
def github(tmp_path: Path) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(root=tmp_path / "github", installed={"acme/app"})
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def _app(fake: FakeGitHub) -> GitHub:
    return GitHub(api_url=fake.api_url, app_id=APP_ID, private_key=fake.private_key_pem)


def test_an_app_token_is_limited_to_the_one_repository_and_what_publishing_needs(github: FakeGitHub) -> None:
    grant = _app(github).grant(Repository("acme", "app"), pull_request=True)
    assert grant.api_url == f"{github.api_url}/repos/acme/app"
    assert grant.expires_at is not None
    assert github.token_requests == [
        {"repositories": ["app"], "permissions": {"contents": "write", "pull_requests": "write"}}
    ]
    assert github.token_for(f"Bearer {grant.token}", "acme/app", "contents") is not None
    assert github.token_for(f"Bearer {grant.token}", "acme/other", "contents") is None


def test_a_push_without_a_pull_request_gets_no_pull_request_permission(github: FakeGitHub) -> None:
    grant = _app(github).grant(Repository("acme", "app"), pull_request=False)
    assert github.token_requests[-1]["permissions"] == {"contents": "write"}
    assert github.token_for(f"Bearer {grant.token}", "acme/app", "pull_requests") is None


def test_the_app_jwt_lives_at_most_ten_minutes() -> None:
    assert JWT_LIFETIME_S + 60 <= 600  # iat is 60 s back; GitHub refuses exp - iat > 10 minutes


def test_without_an_app_the_configured_token_serves(github: FakeGitHub) -> None:
    grant = GitHub(api_url=github.api_url, token="ghp_configured0123456789").grant(
        Repository("acme", "app"), pull_request=True
    )
    assert (grant.token, grant.expires_at) == ("ghp_configured0123456789", None)
    assert github.requests == []  # nothing to ask GitHub


def test_a_repository_the_app_is_not_installed_on_is_refused_clearly(github: FakeGitHub) -> None:
    with pytest.raises(PublishingError, match=r"installation on acme/secret: HTTP 404 Not Found"):
        _app(github).grant(Repository("acme", "secret"), pull_request=False)


def test_a_wrong_app_key_is_refused_by_github(github: FakeGitHub) -> None:
    other = FakeGitHub(root=github.root)  # another key pair
    app = GitHub(api_url=github.api_url, app_id=APP_ID, private_key=other.private_key_pem)
    with pytest.raises(PublishingError, match="HTTP 401"):
        app.grant(Repository("acme", "app"), pull_request=False)


def test_an_unreadable_key_or_an_unreachable_github_is_a_publishing_error(github: FakeGitHub) -> None:
    with pytest.raises(PublishingError, match="private key"):
        GitHub(api_url=github.api_url, app_id=APP_ID, private_key="not a key").grant(
            Repository("acme", "app"), pull_request=False
        )
    github.stop()
    with pytest.raises(PublishingError, match="could not be reached"):
        _app(github).grant(Repository("acme", "app"), pull_request=False)
    github.start()  # for the fixture's stop


def test_not_configured_is_a_publishing_error() -> None:
    github = GitHub(api_url="https://api.github.com")
    assert not github.configured
    with pytest.raises(PublishingError, match="not set up"):
        github.grant(Repository("acme", "app"), pull_request=False)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/acme/app.git", Repository("acme", "app")),
        ("https://github.com/acme/app", Repository("acme", "app")),
        ("https://GitHub.com/acme/app/", Repository("acme", "app")),
        ("https://github.com/acme/app/tree/main", None),
        ("https://github.com/acme", None),
        ("https://github.com/../app", None),
        ("https://gitlab.com/acme/app.git", None),
        ("http://github.com/acme/app.git", None),
        ("https://x@github.com/acme/app.git", None),
        ("https://github.com:8443/acme/app.git", None),
        ("https://github.com/acme/app.git?x=1", None),
        ("https://github.com/ac%2Fme/app.git", None),
        ("https://github.com/acme/app\n.git", None),
        ("https://github.com/acme/a\tpp.git", None),
        ("https://github.com/acme/app.git ", None),
    ],
)
def test_repository_of_a_url_on_the_configured_github(url: str, expected: Repository | None) -> None:
    assert repository_of(url, github_url="https://github.com") == expected


def test_repository_of_a_github_enterprise_server_under_a_path() -> None:
    ghes = "https://git.corp.example/github"
    assert repository_of("https://git.corp.example/github/acme/app.git", github_url=ghes) == Repository(
        "acme", "app"
    )
    assert repository_of("https://git.corp.example/acme/app.git", github_url=ghes) is None
