"""What the runner keeps from the agent and out of what leaves the task."""

from __future__ import annotations

import time
from pathlib import Path

from agents.runner.redact import Redactor, child_environment, secret_values, without_credentials


def test_redact_tokens_keys_and_url_credentials() -> None:
    redact = Redactor(["job-token-0123456789", "short", None])

    line = redact("push https://x-access-token:ghs_abc123@github.com/o/r.git with job-token-0123456789 short")

    assert line == "push https://[redacted]@github.com/o/r.git with [redacted] short"


def test_redact_megabyte_line_quickly() -> None:
    redact = Redactor(["job-token-0123456789"])
    started = time.monotonic()

    redact("x" * 1_000_000 + " see https://example.com")

    assert time.monotonic() - started < 2


def test_strip_credentials_from_repository_url() -> None:
    assert without_credentials("https://user:pw@github.com/o/r.git") == "https://github.com/o/r.git"
    assert without_credentials("git@github.com:o/r.git") == "git@github.com:o/r.git"
    assert without_credentials("file:///srv/r.git") == "file:///srv/r.git"


def test_build_child_environment_without_runner_variables(tmp_path: Path) -> None:
    env = child_environment(
        {
            "OUTPOST_CLAIM_TOKEN": "claim",
            "OUTPOST_CONTROL_PLANE_URL": "http://cp",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/x",
            "ANTHROPIC_API_KEY": "sk-ant-0123456789",
            "HOME": str(tmp_path / "missing-home"),
        },
        scratch=tmp_path,
    )

    assert not [name for name in env if name.startswith(("OUTPOST_", "AWS_CONTAINER_"))]
    assert env["ANTHROPIC_API_KEY"] == "sk-ant-0123456789"
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["HOME"] == str(tmp_path / "home") and Path(env["HOME"]).is_dir()


def test_find_secret_values_by_variable_name() -> None:
    env = {"OPENAI_API_KEY": "sk-1", "GITHUB_TOKEN": "ghp-2", "DB_PASSWORD": "p-3", "PATH": "/bin"}

    assert sorted(secret_values(env)) == ["ghp-2", "p-3", "sk-1"]
