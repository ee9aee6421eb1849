"""The runner's flow: claim → checkout → agent → bundle → upload → report → exit.

Whatever happens after a job is claimed, the runner reports an outcome for it: COMPLETED
(agent exit code 0), FAILED (non-zero exit code, checkout or runner error), TIMED_OUT (the
job's ``timeout_s`` passed; the agent's process group is stopped) or INTERRUPTED (SIGTERM:
Spot interruption or cancel; reported within OUTPOST_STOP_BUDGET_S, inside ECS's 120 s).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from agents.adapters import Adapter, AgentOutput, adapter_for
from agents.error_kinds import AGENT, error_kind
from agents.runner import VERSION
from agents.runner.bundle import FILES, PATCH, SUMMARY, TRANSCRIPT, write_json, write_manifest
from agents.runner.config import (
    EXIT_CLAIM_REFUSED,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    ConfigError,
    RunnerConfig,
    parse_args,
)
from agents.runner.logship import LogShipper
from agents.runner.model_access import gateway_environment
from agents.runner.process import DeadlineError, StoppedError, harden_runner, run_agent
from agents.runner.protocol import ControlPlane, Job, ProtocolError, upload
from agents.runner.publish import Published, publish
from agents.runner.redact import Redactor, child_environment, secret_values, url_password, without_credentials
from agents.runner.timing import UPLOAD_TIMEOUT_S
from agents.runner.workspace import CheckoutError, Git, Patch

MIN_CLAIM_INTERVAL_S = 0.5  # a control plane that answers 204 at once is not hammered
TRANSCRIPT_PARSE_MAX_BYTES = 32 * 1024 * 1024
RETRY_S = 120.0  # uploads and the report retry this long (within the stop budget after SIGTERM)
PUBLISH_TIMEOUT_S = 300.0
ERROR_MAX_CHARS = 2000  # the control plane refuses longer errors (and the summary has the rest)


class ClaimInterrupted(BaseException):  # noqa: N818 - BaseException: no `except Exception` may swallow it
    """Raised by the signal handler in the main thread while the runner waits for a claim."""


class StopSignal:
    """Set by SIGTERM/SIGINT; remembers when, for the stop budget."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.at: float | None = None
        self.name: str | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if not self.event.is_set():
            self.at = time.monotonic()
            self.name = signal.Signals(signum).name
            self.event.set()
        if self.waiting_for_claim:
            # No job yet, nothing to save: end the claim's long poll now rather than when it
            # returns (up to 20 s). A job the control plane handed out in this very instant is
            # lost with the task, and the reconciler requeues it like any lost task's job.
            raise ClaimInterrupted

    waiting_for_claim = False  # set around the claim call, the runner's only idle wait

    def deadline(self, budget_s: float) -> float | None:
        return None if self.at is None else self.at + budget_s


@dataclass(frozen=True)
class Outcome:
    outcome: str
    exit_code: int | None = None
    error: str | None = None


def main(argv: list[str] | None = None) -> int:
    parse_args(argv)
    try:
        config = RunnerConfig.from_env(os.environ)
    except ConfigError as exc:
        print(f"outpost runner: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # No process the runner starts may inherit the claim token.
    os.environ.pop("OUTPOST_CLAIM_TOKEN", None)
    harden_runner()
    stop = StopSignal()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return Runner(config, stop).run()


class Runner:
    def __init__(self, config: RunnerConfig, stop: StopSignal) -> None:
        self.config = config
        self.stop = stop
        self.control_plane = ControlPlane(config.control_plane_url)
        self.base_env = {k: v for k, v in os.environ.items() if k != "OUTPOST_CLAIM_TOKEN"}

    def run(self) -> int:
        started = time.monotonic()
        claimed = self.claim(started)
        if isinstance(claimed, int):
            return claimed
        return JobRun(self, claimed, claim_s=time.monotonic() - started).run()

    def claim(self, started: float) -> Job | int:
        idle_deadline = started + self.config.idle_timeout_s
        backoff = 0.5
        while not self.stop.event.is_set():
            asked = time.monotonic()
            try:
                self.stop.waiting_for_claim = True
                try:
                    job = self.control_plane.claim(self.config.claim_token, self.config.task_id)
                finally:
                    self.stop.waiting_for_claim = False
            except ClaimInterrupted:
                break
            except ProtocolError as exc:
                if exc.status in (401, 403):
                    _note(f"claim refused ({exc.status}): the claim token is unknown or spent; nothing run")
                    return EXIT_CLAIM_REFUSED
                if not exc.retryable:
                    _note(f"claim failed: {exc}")
                    return EXIT_ERROR
                if time.monotonic() >= idle_deadline:
                    _note(f"control plane unreachable until the idle deadline: {exc}")
                    return EXIT_UNREACHABLE
                self.stop.event.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if job is not None:
                return job
            backoff = 0.5
            if time.monotonic() >= idle_deadline:
                _note(f"no job within {self.config.idle_timeout_s:g} s; exiting")
                return EXIT_OK
            self.stop.event.wait(max(0.0, asked + MIN_CLAIM_INTERVAL_S - time.monotonic()))
        _note(f"stopped by {self.stop.name} before a job was claimed")
        return EXIT_OK


class JobRun:
    """One claimed job, from checkout to the reported outcome."""

    def __init__(self, runner: Runner, job: Job, *, claim_s: float) -> None:
        self.runner = runner
        self.config = runner.config
        self.stop = runner.stop
        self.job = job
        self.claimed_at = time.monotonic()
        self.upload_urls: dict[str, str] | None = None  # signed when the bundle upload starts
        self.durations: dict[str, float | None] = {
            "claim": round(claim_s, 3),
            "checkout": None,
            "agent": None,
            "bundle": None,
        }
        # The workspace volume may be shared: each job works in its own directory, removed
        # once the outcome is reported.
        name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{job.dispatch_id}-{job.attempt}")
        self.job_dir = self.config.workspace / f"job-{name}"
        self.repo_dir = self.job_dir / "repo"
        self.bundle_dir = self.job_dir / "bundle"
        self.scratch = self.job_dir / "scratch"
        self.secrets = [
            job.job_token,
            job.gateway_token,
            self.config.claim_token,
            url_password(job.repo.url) if job.repo else None,
            *secret_values(runner.base_env),
        ]
        self.redact = Redactor(self.secrets)
        self.logs = LogShipper(lambda lines: runner.control_plane.send_logs(job, lines))
        self.base: str | None = None
        self.command: list[str] | None = None
        self.published: Published | None = None

    def say(self, message: str) -> None:
        line = self.redact(f"[outpost] {message}")
        self.logs.add(line)
        print(line, file=sys.stderr, flush=True)

    def run(self) -> int:
        self.logs.start()
        job = self.job
        self.say(
            f"claimed dispatch {job.dispatch_id} (agent {job.agent}, attempt {job.attempt}, timeout {job.timeout_s:g} s)"
        )
        try:
            outcome, summary = self.execute()
        except Exception as exc:  # noqa: BLE001 - whatever breaks, the dispatch gets an outcome
            outcome = Outcome("FAILED", None, self.redact(f"runner error: {type(exc).__name__}: {exc}"))
            summary = self.summary(outcome, AgentOutput(), Patch(b"", 0))
        if self.logs.dropped:
            self.say(f"{self.logs.dropped} log lines were dropped (the transcript has them all)")
        self.say(f"outcome {outcome.outcome}" + (f": {outcome.error}" if outcome.error else ""))
        self.logs.close(timeout=self.time_left(default=5.0, reserve=10.0, cap=5.0))
        try:
            return self.report(outcome, summary)
        finally:
            _remove_tree(self.job_dir)

    def execute(self) -> tuple[Outcome, dict[str, Any]]:
        _remove_tree(self.job_dir)
        for directory in (self.bundle_dir, self.scratch):
            directory.mkdir(parents=True, exist_ok=True)
        (self.bundle_dir / TRANSCRIPT).write_bytes(b"")
        env = child_environment(self.runner.base_env, scratch=self.scratch)
        deadline = self.claimed_at + self.job.timeout_s

        outcome = self.checkout(env, deadline)
        if outcome is None:
            outcome = self.run_agent(env, deadline)

        started = time.monotonic()
        patch, outcome = self.collect_patch(env, outcome)
        parsed = self.parse_transcript()
        if outcome.outcome == "FAILED" and outcome.exit_code is not None and parsed.error:
            outcome = Outcome(outcome.outcome, outcome.exit_code, f"{outcome.error}: {parsed.error}")
        elif outcome.outcome == "COMPLETED" and parsed.error:
            # Some CLIs (aider) exit 0 after the provider refused them: their output says so.
            outcome = Outcome("FAILED", 0, f"agent reported an error: {parsed.error}")
        self.durations["bundle"] = round(time.monotonic() - started, 3)
        if outcome.outcome == "COMPLETED" and patch.files_changed:
            self.published = self.publish(env)
        summary = self.summary(outcome, parsed, patch)
        (self.bundle_dir / PATCH).write_bytes(patch.diff)
        write_json(self.bundle_dir / SUMMARY, summary)
        write_manifest(self.bundle_dir, self.job.dispatch_id)
        failed = self.upload_bundle()
        if failed and outcome.outcome == "COMPLETED":
            outcome = Outcome("FAILED", 0, f"upload of the result bundle failed: {', '.join(failed)}")
            summary = {**summary, "outcome": outcome.outcome, "error": outcome.error, "error_kind": AGENT}
        return outcome, summary

    # -- phases ------------------------------------------------------------------------

    def checkout(self, env: dict[str, str], deadline: float) -> Outcome | None:
        if self.stop.event.is_set():
            return self.interrupted()
        started = time.monotonic()
        git = Git(self.repo_dir, env=env, deadline=deadline, stop=self.stop.event, redact=self.redact)
        repo = self.job.repo
        try:
            if repo is None:
                self.say("no repository: starting from an empty git repository")
                self.base = git.init_empty()
            else:
                at = f" at {repo.ref}" if repo.ref else ""
                self.say(f"cloning {without_credentials(repo.url)}{at}")
                self.base = git.clone(repo.url, repo.ref)
            self.say(f"base commit {self.base}")
            git.exclude(adapter_for(self.config.agent).ignored)
            return None
        except CheckoutError as exc:
            return Outcome("FAILED", None, f"checkout failed: {exc}")
        except StoppedError:
            return self.interrupted()
        except DeadlineError:
            return Outcome("TIMED_OUT", None, f"timed out after {self.job.timeout_s:g} s during checkout")
        finally:
            self.durations["checkout"] = round(time.monotonic() - started, 3)

    def run_agent(self, env: dict[str, str], deadline: float) -> Outcome:
        if self.job.agent != self.config.agent:
            return Outcome(
                "FAILED", None, f"job is for agent {self.job.agent!r}; this task runs {self.config.agent!r}"
            )
        if self.stop.event.is_set():
            return self.interrupted()
        adapter = adapter_for(self.config.agent)
        agent_env = self.agent_environment(adapter, env)
        argv = adapter.command(self.job.task, scratch=self.scratch, env=agent_env)
        self.command = [_hide_task(arg, self.job.task) for arg in argv]
        self.say(f"running {shlex.join(self.command)}")
        started = time.monotonic()
        with (self.bundle_dir / TRANSCRIPT).open("w", encoding="utf-8", errors="replace") as transcript:

            def on_line(line: str) -> None:
                line = self.redact(line)
                with contextlib.suppress(ValueError):  # closed: a process escaped the group
                    transcript.write(line + "\n")
                self.logs.add(line)

            result = run_agent(
                argv,
                cwd=self.repo_dir,
                env=agent_env,
                deadline=deadline,
                stop=self.stop.event,
                kill_grace_s=self.config.kill_grace_s,
                on_line=on_line,
            )
        elapsed = time.monotonic() - started
        self.durations["agent"] = round(elapsed, 3)
        if result.start_error:
            return Outcome("FAILED", None, result.start_error)
        if result.interrupted:
            return self.interrupted()
        if result.timed_out:
            self.say(f"agent timed out after {elapsed:.1f} s; its processes were stopped")
            return Outcome("TIMED_OUT", None, f"timed out after {self.job.timeout_s:g} s")
        self.say(f"agent exited with code {result.exit_code} after {elapsed:.1f} s")
        if result.exit_code == 0:
            return Outcome("COMPLETED", 0)
        if result.killed_by:
            return Outcome("FAILED", result.exit_code, f"agent killed by {result.killed_by}")
        return Outcome("FAILED", result.exit_code, f"agent exited with code {result.exit_code}")

    def agent_environment(self, adapter: Adapter, env: dict[str, str]) -> dict[str, str]:
        """The agent's environment, with a HOME and a temporary directory of its own in the
        job's scratch space.

        CLIs keep settings, caches and the config files the adapter writes in HOME, and
        conversation dumps and other temporary files in TMPDIR (TMP and TEMP for the tools
        that read those): never in the home or /tmp of the machine running a local-mode
        runner, never shared between jobs, removed with the job's directory.
        """
        home, tmp = self.scratch / "home", self.scratch / "tmp"
        for directory in (home, tmp):
            directory.mkdir(parents=True, exist_ok=True)
        own = {"HOME": str(home), **dict.fromkeys(("TMPDIR", "TMP", "TEMP"), str(tmp))}
        settings = gateway_environment(
            {**env, **own, **self.job.settings_env()},
            agent=self.config.agent,
            token=self.job.gateway_token,
            gateway_url=self.job.gateway_url or f"{self.config.control_plane_url}/gateway",
        )
        agent_env = adapter.environment(settings)
        agent_env.update(adapter.prepare(home, agent_env))
        return agent_env

    def collect_patch(self, env: dict[str, str], outcome: Outcome) -> tuple[Patch, Outcome]:
        if self.base is None:
            return Patch(b"", 0), outcome
        # A fresh stop event: the patch is still wanted after SIGTERM, within the budget (the
        # last third of it stays for the uploads and the report).
        deadline = self.stop.deadline(self.config.stop_budget_s * 2 / 3) or time.monotonic() + 600
        git = Git(self.repo_dir, env=env, deadline=deadline, stop=threading.Event(), redact=self.redact)
        try:
            patch = git.patch(self.base)
        except (CheckoutError, DeadlineError) as exc:
            self.say(f"could not build the patch: {exc or 'deadline passed'}")
            if outcome.outcome == "COMPLETED":
                outcome = Outcome("FAILED", 0, f"could not build the patch: {exc or 'deadline passed'}")
            return Patch(b"", 0), outcome
        self.say(f"patch: {patch.files_changed} files changed, {len(patch.diff)} bytes")
        return patch, outcome

    def publish(self, env: dict[str, str]) -> Published | None:
        spec = self.job.publish
        if spec is None or self.stop.event.is_set() or self.base is None:
            return None
        # Asked for only now: no agent process runs while the token exists in the task.
        try:
            grant = self.runner.control_plane.publish_grant(self.job)
        except ProtocolError as exc:
            published = Published(spec.branch, error=self.redact(f"no publishing token: {exc}"))
            self.say(f"publishing failed: {published.error}")
            return published
        self.redact = Redactor([*self.secrets, grant.token])
        self.say(f"pushing the change to branch {spec.branch}")
        published = publish(
            spec,
            grant,
            repo_dir=self.repo_dir,
            scratch=self.scratch,
            env=env,
            deadline=time.monotonic() + PUBLISH_TIMEOUT_S,
            stop=self.stop.event,
            redact=self.redact,
            message=spec.pull_request.title
            if spec.pull_request
            else f"Outpost dispatch {self.job.dispatch_id}",
        )
        if published.error:
            self.say(f"publishing failed: {published.error}")
        else:
            self.say(
                f"pushed {published.commit} to {spec.branch}"
                + (f"; pull request {published.pull_request_url}" if published.pull_request_url else "")
            )
        return published

    def parse_transcript(self) -> AgentOutput:
        path = self.bundle_dir / TRANSCRIPT
        with path.open("rb") as handle:
            size = path.stat().st_size
            handle.seek(max(0, size - TRANSCRIPT_PARSE_MAX_BYTES))
            text = handle.read().decode("utf-8", "replace")
        try:
            return adapter_for(self.config.agent).parse(text)
        except Exception as exc:  # noqa: BLE001 - a parser bug must not lose the job's result
            self.say(f"could not parse the agent's output: {type(exc).__name__}: {exc}")
            return AgentOutput()

    def upload_bundle(self) -> list[str]:
        failed = []
        for name in FILES:
            error = self.upload_file(name, (self.bundle_dir / name).read_bytes())
            if error is not None:
                self.say(f"upload of {name} failed: {error}")
                failed.append(name)
        if not failed:
            self.say(f"uploaded {', '.join(FILES)}")
        return failed

    def upload_file(self, name: str, data: bytes) -> ProtocolError | str | None:
        """Uploads one bundle file; the error, or None once it is stored."""
        if self.time_left(default=UPLOAD_TIMEOUT_S, reserve=10.0, cap=UPLOAD_TIMEOUT_S) < 1:
            return "no time left after SIGTERM"

        def attempt() -> None:
            timeout = max(1.0, self.time_left(default=UPLOAD_TIMEOUT_S, reserve=10.0, cap=UPLOAD_TIMEOUT_S))
            # Signed when the bundle upload starts, not at the claim: a URL from the start of a
            # long job would have expired with the session that signed it
            # (agents/runner/timing.py). One call signs the whole bundle; a failed try drops them
            # and the next try asks for fresh ones.
            urls, self.upload_urls = self.upload_urls, None
            if urls is None:
                urls = self.runner.control_plane.upload_urls(self.job, timeout=min(timeout, 15.0))
            url = urls.get(name)
            if not url:
                raise ProtocolError("the control plane gave no upload URL for it", 200)
            upload(url, data, timeout=timeout)
            self.upload_urls = urls

        return self.retrying(attempt, reserve=10.0)  # the report needs the rest of the budget

    def report(self, outcome: Outcome, summary: dict[str, Any]) -> int:
        body = {
            "outcome": outcome.outcome,
            "exit_code": outcome.exit_code,
            "error": outcome.error[:ERROR_MAX_CHARS] if outcome.error else None,
            "summary": summary,
        }
        error = self.retrying(
            lambda: self.runner.control_plane.send_result(
                self.job, body, timeout=max(1.0, self.time_left(default=15.0, reserve=0.0, cap=15.0))
            )
        )
        if error is None:
            return EXIT_OK
        _note(self.redact(f"could not report the outcome: {error}"))
        return EXIT_ERROR

    # -- helpers -----------------------------------------------------------------------

    def retrying(self, call: Callable[[], None], *, reserve: float = 0.0) -> ProtocolError | None:
        """Runs ``call`` until it succeeds; again, with a capped backoff, after what may pass
        (network errors, 408, 429, 5xx: the control plane may be restarting) for up to
        RETRY_S, or after SIGTERM until ``reserve`` before the stop budget ends. The last
        error, or None."""
        started, delay = time.monotonic(), 0.5
        while True:
            try:
                call()
                return None
            except ProtocolError as exc:
                stop_deadline = self.stop.deadline(self.config.stop_budget_s)
                give_up = started + RETRY_S if stop_deadline is None else stop_deadline - reserve
                if not exc.retryable or time.monotonic() + delay >= give_up:
                    return exc
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def interrupted(self) -> Outcome:
        return Outcome("INTERRUPTED", None, f"stopped by {self.stop.name or 'a signal'}")

    def time_left(self, *, default: float, reserve: float, cap: float) -> float:
        """Seconds for the next step: ``default`` normally, less once SIGTERM started the clock."""
        deadline = self.stop.deadline(self.config.stop_budget_s)
        if deadline is None:
            return default
        return max(0.0, min(cap, deadline - reserve - time.monotonic()))

    def summary(self, outcome: Outcome, parsed: AgentOutput, patch: Patch) -> dict[str, Any]:
        repo = self.job.repo
        return {
            "dispatch_id": self.job.dispatch_id,
            "agent": self.job.agent,
            "attempt": self.job.attempt,
            "outcome": outcome.outcome,
            "exit_code": outcome.exit_code,
            "error": outcome.error[:ERROR_MAX_CHARS] if outcome.error else None,
            "repo": {"url": without_credentials(repo.url), "ref": repo.ref} if repo else None,
            "base_commit": self.base,
            "command": self.command,
            "durations_s": dict(self.durations),
            "tokens": {
                "input": parsed.input_tokens,
                "output": parsed.output_tokens,
                "cached_input": parsed.cached_input_tokens,
            },
            "cost_usd": parsed.cost_usd,
            "final_message": self.redact(parsed.final_message) if parsed.final_message else None,
            "agent_error": self.redact(parsed.error) if parsed.error else None,
            # why a FAILED job failed (agents/error_kinds.py): the control plane counts it so
            "error_kind": error_kind(self.job.agent, parsed.error) if outcome.outcome == "FAILED" else None,
            "patch": {"files_changed": patch.files_changed, "bytes": len(patch.diff)},
            "publish": self.published.to_summary() if self.published else None,
            "runner_version": VERSION,
        }


def _hide_task(arg: str, task: str) -> str:
    """The argument as logged: the task itself (which may be long or private) as <task>."""
    if task and arg == task:
        return "<task>"
    if task and arg.endswith("=" + task):
        return arg[: -len(task)] + "<task>"
    return arg


def _remove_tree(path: Path) -> None:
    """Removes the job's directory, even where the agent took write permission away."""

    def allow_and_retry(function: Any, failed: str, _: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(failed), 0o700)
            os.chmod(failed, 0o700)
            function(failed)

    if path.exists():
        shutil.rmtree(path, onerror=allow_and_retry)


def _note(message: str) -> None:
    print(f"[outpost] {message}", file=sys.stderr, flush=True)
