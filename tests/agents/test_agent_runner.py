"""The runner as a real subprocess against a real HTTP control plane on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents.adapters import adapter_for
from agents.registry import AGENTS
from tests.agents.runner_harness import (
    BUNDLE_FILES,
    CLAIM_TOKEN,
    JOB_TOKEN,
    FakeControlPlane,
    git,
    make_job,
    process_gone,
    run_runner,
    runner_env,
    start_runner,
)

FIXTURES = Path(__file__).parent / "fixtures"


def read_pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


def wait_until(condition, timeout: float = 20.0) -> bool:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_run_shell_job_completed_with_patch_and_manifest(plane: FakeControlPlane, workspace: Path) -> None:
    plane.job = make_job("mkdir -p src && printf 'hello outpost\\n' > src/hello.txt && echo done editing")

    done = run_runner(runner_env(plane, workspace))

    assert done.returncode == 0, done.stderr
    result = plane.result
    assert (result["outcome"], result["exit_code"], result["error"]) == ("COMPLETED", 0, None)
    assert set(plane.uploads) == set(BUNDLE_FILES)
    patch = plane.uploads["patch.diff"].decode()
    assert "b/src/hello.txt" in patch and "+hello outpost" in patch
    manifest = json.loads(plane.uploads["manifest.json"])
    assert manifest["dispatch_id"] == "d-0001"
    for name in ("patch.diff", "transcript.txt", "summary.json"):
        data = plane.uploads[name]
        assert manifest["files"][name] == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    summary = json.loads(plane.uploads["summary.json"])
    assert summary == result["summary"]
    assert summary["exit_code"] == 0 and summary["final_message"] == "done editing"
    assert summary["patch"]["files_changed"] == 1
    assert all(
        isinstance(summary["durations_s"][phase], float) for phase in ("claim", "checkout", "agent", "bundle")
    )
    assert "done editing" in plane.uploads["transcript.txt"].decode()
    assert "done editing" in plane.log_lines
    # The patch applies to the base the runner started from (an empty repository).
    target = workspace.parent / "apply"
    target.mkdir()
    (target / "patch.diff").write_bytes(plane.uploads["patch.diff"])
    git("apply", "patch.diff", cwd=target)
    assert (target / "src" / "hello.txt").read_text() == "hello outpost\n"
    # Nothing of the job stays in the (possibly shared) workspace volume.
    assert list(workspace.iterdir()) == []


def test_run_shell_job_failed_with_exit_code(plane: FakeControlPlane, workspace: Path) -> None:
    plane.job = make_job("echo about to fail; exit 7")

    done = run_runner(runner_env(plane, workspace))

    assert done.returncode == 0, done.stderr
    assert plane.result["outcome"] == "FAILED"
    assert plane.result["exit_code"] == 7
    assert "code 7" in plane.result["error"]
    assert plane.result["summary"]["error_kind"] == "agent"
    assert set(plane.uploads) == set(BUNDLE_FILES)


def test_time_out_job_and_stop_its_process_group(
    plane: FakeControlPlane, workspace: Path, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    # The agent ignores SIGTERM and leaves a background child: only SIGKILL of the group ends both.
    plane.job = make_job(
        f"trap '' TERM; sleep 300 & echo $! > {pids}; echo $$ >> {pids}; sleep 300", timeout_s=1
    )

    started = time.monotonic()
    done = run_runner(runner_env(plane, workspace))

    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30  # timeout 1 s + kill grace 1 s, with room for a slow machine
    result = plane.result
    assert (result["outcome"], result["exit_code"]) == ("TIMED_OUT", None)
    assert "timed out after 1 s" in result["error"]
    assert len(read_pids(pids)) == 2
    assert all(process_gone(pid) for pid in read_pids(pids))


def test_report_interrupted_on_sigterm(plane: FakeControlPlane, workspace: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    plane.job = make_job(
        f"echo partial > work.txt; chmod -w .; echo $$ > {pids}; echo agent-started; trap '' TERM; sleep 300 & wait",
        timeout_s=60,
    )
    runner = start_runner(runner_env(plane, workspace))
    try:
        assert wait_until(lambda: "agent-started" in plane.log_lines), "the agent never started"
        runner.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        runner.wait(timeout=30)
    finally:
        runner.kill()
        _, stderr = runner.communicate()

    assert runner.returncode == 0, stderr
    assert time.monotonic() - signalled < 30  # OUTPOST_STOP_BUDGET_S in these tests
    result = plane.result
    assert (result["outcome"], result["exit_code"]) == ("INTERRUPTED", None)
    assert result["error"] == "stopped by SIGTERM"
    assert "agent-started" in plane.uploads["transcript.txt"].decode()
    assert "+partial" in plane.uploads["patch.diff"].decode()  # the work so far is kept
    assert all(process_gone(pid) for pid in read_pids(pids))
    assert list(workspace.iterdir()) == []  # removed, though the agent made its directory read-only


def test_keep_tokens_out_of_agent_environment(
    plane: FakeControlPlane, workspace: Path, tmp_path: Path
) -> None:
    env_file = tmp_path / "agent.env"
    provider_key = "sk-ant-test-provider-key-0123456789"
    plane.job = make_job(f"env > {env_file}; env")

    done = run_runner(runner_env(plane, workspace, ANTHROPIC_API_KEY=provider_key))

    assert done.returncode == 0, done.stderr
    agent_env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    assert not [name for name in agent_env if name.startswith("OUTPOST_")]
    assert CLAIM_TOKEN not in env_file.read_text() and JOB_TOKEN not in env_file.read_text()
    assert agent_env["ANTHROPIC_API_KEY"] == provider_key
    # What leaves the task (transcript, log lines, summary) never carries a token or the key.
    sent = plane.uploads["transcript.txt"].decode() + "\n".join(plane.log_lines) + json.dumps(plane.result)
    for secret in (CLAIM_TOKEN, JOB_TOKEN, provider_key):
        assert secret not in sent
    assert "ANTHROPIC_API_KEY=[redacted]" in plane.log_lines


@pytest.fixture
def bare_repo(tmp_path: Path) -> dict[str, str]:
    """A bare repository with main (tagged v1) and a feature branch one commit ahead."""
    work = tmp_path / "seed"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    git("config", "user.email", "seed@example.com", cwd=work)
    git("config", "user.name", "Seed", cwd=work)
    (work / "README").write_text("seed\n")
    git("add", "README", cwd=work)
    git("commit", "-q", "-m", "seed", cwd=work)
    git("tag", "v1", cwd=work)
    main = git("rev-parse", "HEAD", cwd=work)
    git("checkout", "-q", "-b", "feature", cwd=work)
    (work / "feature.txt").write_text("on the feature branch\n")
    git("add", "feature.txt", cwd=work)
    git("commit", "-q", "-m", "feature work", cwd=work)
    feature = git("rev-parse", "HEAD", cwd=work)
    git("checkout", "-q", "main", cwd=work)  # the bare copy's HEAD (default branch) is main
    bare = tmp_path / "origin.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)
    return {"url": f"file://{bare}", "main": main, "feature": feature}


@pytest.mark.parametrize(
    ("ref", "expected"),
    [(None, "main"), ("feature", "feature"), ("v1", "main"), ("<feature sha>", "feature")],
)
def test_clone_local_bare_repo_at_ref(
    plane: FakeControlPlane, workspace: Path, bare_repo: dict[str, str], ref: str | None, expected: str
) -> None:
    if ref == "<feature sha>":
        ref = bare_repo["feature"]
    plane.job = make_job("echo changed >> README && ls", repo={"url": bare_repo["url"], "ref": ref})

    done = run_runner(runner_env(plane, workspace))

    assert done.returncode == 0, done.stderr
    result = plane.result
    assert result["outcome"] == "COMPLETED", result
    assert result["summary"]["base_commit"] == bare_repo[expected]
    patch = plane.uploads["patch.diff"].decode()
    assert "+changed" in patch and "feature.txt" not in patch
    listing = plane.uploads["transcript.txt"].decode().split()
    assert ("feature.txt" in listing) == (expected == "feature")


PUBLISH_TOKEN = "ghs_publish0123456789abcdef"  # noqa: S105 - test value


def publish_spec(plane: FakeControlPlane, repo_url: str) -> dict:
    """The claim's `publish` (what to publish); the token comes later, from .../publish-token."""
    plane.publish_grant = {
        "token": PUBLISH_TOKEN,
        "remote_url": repo_url,
        "api_url": f"{plane.url}/github/repos/o/r",
        "base": "main",
        "expires_at": "2026-12-02T03:00:00Z",
    }
    return {
        "branch": "outpost/d-0001",
        "pull_request": {"title": "Outpost: add hello.txt", "body": "Dispatched by Outpost.", "draft": True},
    }


def test_push_branch_and_open_pull_request(
    plane: FakeControlPlane, workspace: Path, bare_repo: dict[str, str], tmp_path: Path
) -> None:
    env_file = tmp_path / "agent.env"
    decoy = tmp_path / "decoy.git"
    git("init", "-q", "--bare", str(decoy), cwd=tmp_path)
    # The agent tries to divert the push through its repository's configuration.
    divert = f"git config url.file://{decoy}.insteadOf {bare_repo['url']}"
    ended = tmp_path / "agent.ended"
    plane.job = make_job(
        f"env > {env_file}; {divert}; echo hello > hello.txt; date +%s.%N > {ended}",
        repo={"url": bare_repo["url"], "ref": "main"},
    )
    plane.job["publish"] = publish_spec(plane, bare_repo["url"])

    done = run_runner(runner_env(plane, workspace))

    assert done.returncode == 0, done.stderr
    assert plane.result["outcome"] == "COMPLETED"
    bare = Path(bare_repo["url"].removeprefix("file://"))
    pushed = git("rev-parse", "refs/heads/outpost/d-0001", cwd=bare)
    assert git("rev-parse", f"{pushed}^", cwd=bare) == bare_repo["main"]
    assert git("show", f"{pushed}:hello.txt", cwd=bare) == "hello"
    assert git("for-each-ref", cwd=decoy) == ""
    assert (
        git("log", "-1", "--format=%s <%ae>", pushed, cwd=bare)
        == "Outpost: add hello.txt <agent@outpost.invalid>"
    )
    assert plane.result["summary"]["publish"] == {
        "branch": "outpost/d-0001",
        "commit": pushed,
        "pull_request_url": "https://github.example/o/r/pull/7",
        "error": None,
    }
    assert plane.pull_requests == [
        {
            "authorization": f"Bearer {PUBLISH_TOKEN}",
            "body": {
                "title": "Outpost: add hello.txt",
                "head": "outpost/d-0001",
                "base": "main",
                "body": "Dispatched by Outpost.",
                "draft": True,
            },
        }
    ]
    # The token is asked for once, after the agent ended: it never exists while an agent process runs.
    assert len(plane.grant_requests) == 1 and plane.grant_requests[0] > float(ended.read_text())
    # The publishing token reaches neither the agent nor anything sent back.
    assert PUBLISH_TOKEN not in env_file.read_text()
    sent = plane.uploads["transcript.txt"].decode() + "\n".join(plane.log_lines) + json.dumps(plane.result)
    assert PUBLISH_TOKEN not in sent


def test_skip_publishing_failed_job(
    plane: FakeControlPlane, workspace: Path, bare_repo: dict[str, str]
) -> None:
    plane.job = make_job("echo half done > hello.txt; exit 1", repo={"url": bare_repo["url"], "ref": "main"})
    plane.job["publish"] = publish_spec(plane, bare_repo["url"])

    done = run_runner(runner_env(plane, workspace))

    assert done.returncode == 0, done.stderr
    assert plane.result["outcome"] == "FAILED"
    assert plane.result["summary"]["publish"] is None
    assert not plane.pull_requests and not plane.grant_requests
    bare = Path(bare_repo["url"].removeprefix("file://"))
    assert "outpost/d-0001" not in git("branch", "--list", cwd=bare)


def test_upload_bundle_of_a_job_that_ran_its_full_timeout_through_urls_signed_at_upload(
    plane: FakeControlPlane, workspace: Path
) -> None:
    # Upload URLs live shorter than the job: only URLs asked for after the agent ended work.
    plane.job = make_job("echo partial > work.txt; sleep 300", timeout_s=2)
    plane.url_ttl_s = 1.5
    assert plane.url_ttl_s < plane.job["timeout_s"]

    started = time.time()
    done = run_runner(runner_env(plane, workspace))

    assert done.returncode == 0, done.stderr
    assert plane.result["outcome"] == "TIMED_OUT"
    assert set(plane.uploads) == set(BUNDLE_FILES)
    assert "+partial" in plane.uploads["patch.diff"].decode()
    assert plane.url_requests and min(plane.url_requests) >= started + plane.job["timeout_s"]
    assert len(plane.url_requests) == 1  # one call signs the whole bundle


def test_upload_bundle_after_the_control_plane_comes_back(plane: FakeControlPlane, workspace: Path) -> None:
    # The control plane that signs the upload URLs restarts while the job ends (seconds of 503s).
    plane.job = make_job("echo work > work.txt")
    plane.url_outages = 3  # more than the three tries per file an upload once had

    done = run_runner(runner_env(plane, workspace))

    assert done.returncode == 0, done.stderr
    assert plane.result["outcome"] == "COMPLETED"
    assert plane.url_outages == 0 and set(plane.uploads) == set(BUNDLE_FILES)
    assert len(plane.url_requests) == 1  # the 503s signed nothing; the one answer served the bundle


def test_fail_job_whose_bundle_cannot_be_uploaded(plane: FakeControlPlane, workspace: Path) -> None:
    plane.job = make_job("echo work > work.txt")
    plane.refuse_uploads = True

    done = run_runner(runner_env(plane, workspace))

    assert done.returncode == 0, done.stderr
    result = plane.result
    assert (result["outcome"], result["exit_code"]) == ("FAILED", 0)
    assert result["error"].startswith("upload of the result bundle failed: patch.diff")
    assert result["summary"]["outcome"] == "FAILED"


def test_fail_job_when_agent_cli_is_missing(plane: FakeControlPlane, workspace: Path, tmp_path: Path) -> None:
    plane.job = make_job("fix the bug", agent="claude")
    only_git = tmp_path / "bin"  # a PATH with git and nothing else
    only_git.mkdir()
    (only_git / "git").symlink_to(shutil.which("git"))

    done = run_runner(runner_env(plane, workspace, agent="claude", PATH=str(only_git)))

    assert done.returncode == 0, done.stderr
    assert plane.result["outcome"] == "FAILED"
    assert plane.result["error"].startswith("cannot start 'claude'")


def test_fail_checkout_of_missing_repository(
    plane: FakeControlPlane, workspace: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "agent-ran"
    plane.job = make_job(f"touch {marker}", repo={"url": f"file://{tmp_path}/missing.git", "ref": None})

    done = run_runner(runner_env(plane, workspace))

    assert done.returncode == 0, done.stderr
    assert plane.result["outcome"] == "FAILED"
    assert plane.result["exit_code"] is None
    assert plane.result["error"].startswith("checkout failed: git clone:")
    assert not marker.exists()


def test_claim_job_after_empty_answers(plane: FakeControlPlane, workspace: Path) -> None:
    plane.job = make_job("echo claimed")
    plane.empty_claims = 2

    done = run_runner(runner_env(plane, workspace))

    assert done.returncode == 0, done.stderr
    assert len(plane.claims) == 3
    assert plane.claims[0] == {"task_id": "task-0001"}
    assert plane.result["outcome"] == "COMPLETED"


def test_exit_nonzero_on_spent_claim_token(plane: FakeControlPlane, workspace: Path, tmp_path: Path) -> None:
    marker = tmp_path / "agent-ran"
    plane.job = make_job(f"touch {marker}")
    plane.spent = True  # a runner already claimed with this token

    done = run_runner(runner_env(plane, workspace))

    assert done.returncode == 3
    assert "claim refused (401)" in done.stderr
    assert not marker.exists()
    assert not plane.results and not plane.log_lines and not plane.uploads
    assert list(workspace.iterdir()) == []


def test_exit_when_no_job_before_idle_deadline(plane: FakeControlPlane, workspace: Path) -> None:
    started = time.monotonic()
    done = run_runner(runner_env(plane, workspace, OUTPOST_IDLE_TIMEOUT_S="1"))

    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 20
    assert len(plane.claims) >= 2
    assert not plane.results


def test_keep_long_output_lines_whole(plane: FakeControlPlane, workspace: Path) -> None:
    # One 300 KB line, as a JSON event of an agent CLI can be: it must stay one line to parse.
    plane.job = make_job("head -c 300000 /dev/zero | tr '\\0' x; echo; echo after")

    done = run_runner(runner_env(plane, workspace))

    assert done.returncode == 0, done.stderr
    assert plane.uploads["transcript.txt"].decode().split("\n") == ["x" * 300000, "after", ""]
    assert max(len(line) for line in plane.log_lines) <= 8192


def test_exit_on_sigterm_before_a_job_without_waiting_out_the_long_poll(
    plane: FakeControlPlane, workspace: Path
) -> None:
    # The control plane holds an empty claim for up to 20 s (SQS's longest poll). An idle task
    # told to stop (scale-down, `outpost dev` stopping) has nothing to save: it ends at once.
    plane.claim_poll_s = 20.0
    runner = start_runner(runner_env(plane, workspace, OUTPOST_IDLE_TIMEOUT_S="60"))
    try:
        assert wait_until(lambda: len(plane.claims) >= 1)
        time.sleep(0.2)  # into the claim's wait
        signalled = time.monotonic()
        runner.send_signal(signal.SIGTERM)
        runner.wait(timeout=30)
        stopped_s = time.monotonic() - signalled
    finally:
        runner.kill()
        _, stderr = runner.communicate()

    assert runner.returncode == 0, stderr
    assert stopped_s < plane.claim_poll_s / 2, f"the runner waited out the claim ({stopped_s:.1f} s)"
    assert "stopped by SIGTERM before a job was claimed" in stderr
    assert not plane.results


def test_stream_logs_while_agent_runs(plane: FakeControlPlane, workspace: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    # The agent waits for a file that the control plane creates when it sees the agent's first line.
    plane.on_logs = lambda lines: go.touch() if "waiting-for-go" in lines else None
    plane.job = make_job(
        f"echo waiting-for-go; while [ ! -e {go} ]; do sleep 0.05; done; echo got-go", timeout_s=10
    )

    done = run_runner(runner_env(plane, workspace))

    assert done.returncode == 0, done.stderr
    assert plane.result["outcome"] == "COMPLETED"
    assert plane.log_lines.index("waiting-for-go") < plane.log_lines.index("got-go")


@pytest.mark.parametrize(
    ("agent", "fixture", "key_given", "key_read", "tokens", "cost"),
    [
        (
            "claude",
            "claude_stream.jsonl",
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_API_KEY",
            (22195, 418, 15872),
            0.0421635,
        ),
        ("codex", "codex.jsonl", "OPENAI_API_KEY", "CODEX_API_KEY", (24763, 122, 24448), None),
        ("gemini", "gemini_stream.jsonl", "GOOGLE_API_KEY", "GEMINI_API_KEY", (21512, 381, 14336), None),
        ("aider", "aider.txt", "OPENAI_API_KEY", "OPENAI_API_KEY", (3800, 142, 1200), 0.0064),
        ("grok", "grok.jsonl", "XAI_API_KEY", "GROK_API_KEY", (None, None, None), None),
    ],
)
def test_run_agent_cli_through_its_adapter(
    plane: FakeControlPlane,
    workspace: Path,
    tmp_path: Path,
    agent: str,
    fixture: str,
    key_given: str,
    key_read: str,
    tokens: tuple[int | None, ...],
    cost: float | None,
) -> None:
    # A stand-in for the agent's CLI: records its argv and environment, prints the fixture.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / AGENTS[agent].command[0]
    fake.write_text(
        f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {tmp_path}/argv\nenv > {tmp_path}/env\ncat {FIXTURES / fixture}\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    task = "add a name parameter to greet()"
    plane.job = make_job(task, agent=agent)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    env = runner_env(plane, workspace, agent=agent, PATH=path, **{key_given: "provider-key-0123456789"})

    done = run_runner(env)

    assert done.returncode == 0, done.stderr
    assert plane.result["outcome"] == "COMPLETED"
    summary = plane.result["summary"]
    assert tuple(summary["tokens"].values()) == tokens
    assert summary["cost_usd"] == cost
    assert (
        summary["final_message"] == adapter_for(agent).parse((FIXTURES / fixture).read_text()).final_message
    )
    assert summary["final_message"]
    scratch = workspace / "job-d-0001-1" / "scratch"
    expected = adapter_for(agent).command(task, scratch=scratch, env={})
    assert (tmp_path / "argv").read_text().splitlines() == expected[1:]
    assert summary["command"] == [arg.replace(task, "<task>") for arg in expected]
    agent_env = (tmp_path / "env").read_text().splitlines()
    assert f"{key_read}=provider-key-0123456789" in agent_env
    # A HOME of the job's own: the CLI's state never lands in the runner user's home.
    assert f"HOME={scratch / 'home'}" in agent_env
    # Temporary files too (some CLIs dump conversations there): never the host's /tmp,
    # even though the runner's own /tmp is writable.
    tmp = scratch / "tmp"
    assert {f"{name}={tmp}" for name in ("TMPDIR", "TMP", "TEMP")} <= set(agent_env), agent_env


@pytest.mark.parametrize(
    ("agent", "output", "exit_code", "kind"),
    [
        # what the real CLIs print (tests/agents/test_error_kinds.py has every case)
        ("claude", (FIXTURES / "claude_error.json").read_text(), 1, "api"),
        ("codex", (FIXTURES / "codex_failed.jsonl").read_text(), 1, "api"),
        (
            "grok",
            '{"role":"assistant","content":"Sorry, I encountered an error: Grok API error: '
            'Connection error."}',
            0,
            "network",
        ),
        ("claude", "error: unknown option '--bogus'", 1, "agent"),
    ],
)
def test_report_the_kind_of_a_failed_agents_error(
    plane: FakeControlPlane,
    workspace: Path,
    tmp_path: Path,
    agent: str,
    output: str,
    exit_code: int,
    kind: str,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "output").write_text(output + "\n")
    fake = bin_dir / AGENTS[agent].command[0]
    fake.write_text(f"#!/bin/sh\ncat {tmp_path / 'output'}\nexit {exit_code}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    plane.job = make_job("add a name parameter to greet()", agent=agent)
    env = runner_env(plane, workspace, agent=agent, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    done = run_runner(env)

    assert done.returncode == 0, done.stderr
    assert plane.result["outcome"] == "FAILED"
    assert plane.result["summary"]["agent_error"]
    assert plane.result["summary"]["error_kind"] == kind


def test_report_no_error_kind_for_a_completed_job(plane: FakeControlPlane, workspace: Path) -> None:
    plane.job = make_job("echo fine")
    run_runner(runner_env(plane, workspace))
    assert plane.result["outcome"] == "COMPLETED"
    assert plane.result["summary"]["error_kind"] is None


def test_show_runner_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agents.runner", "--help"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0
    for name in (
        "OUTPOST_CONTROL_PLANE_URL",
        "OUTPOST_CLAIM_TOKEN",
        "OUTPOST_WORKSPACE",
        "OUTPOST_IDLE_TIMEOUT_S",
    ):
        assert name in done.stdout
