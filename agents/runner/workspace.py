"""The workspace's git repository: checkout before the agent, patch after it.

Clones run with no credential helper, no prompts and only the https and ssh protocols (plus
the scheme of the URL the job names: the control plane decides which URLs are acceptable,
the runner clones what it is given). Every git command of the runner overrides the hooks
path, fsmonitor, external diff and textconv: after the agent ran, the repository's
configuration is the agent's, and the runner must not execute what it put there. (Clean
filters from the repository's own config still run on ``git add``; they run in the same
scrubbed environment and with the same rights as the agent itself, so they gain nothing.)
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from agents.runner.process import run_captured
from agents.runner.redact import Redactor, without_credentials

AUTHOR = ("Outpost", "agent@outpost.invalid")
_SAFE = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "credential.helper=",
    "-c", "advice.detachedHead=false",
)  # fmt: skip
_REF = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/@+-]*$")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:")


class CheckoutError(Exception):
    pass


@dataclass(frozen=True)
class Patch:
    diff: bytes
    files_changed: int


class Git:
    def __init__(
        self,
        repo_dir: Path,
        *,
        env: Mapping[str, str],
        deadline: float,
        stop: threading.Event,
        redact: Redactor,
    ) -> None:
        self.repo_dir = repo_dir
        self._env = env
        self._deadline = deadline
        self._stop = stop
        self._redact = redact

    def run(
        self, *args: str, cwd: Path | None = None, check: bool = True, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        argv = ["git", *_SAFE, "-c", f"safe.directory={self.repo_dir}", *args]
        done = run_captured(
            argv,
            cwd=cwd or self.repo_dir,
            env={**self._env, **(env or {})},
            deadline=self._deadline,
            stop=self._stop,
        )
        if check and done.returncode != 0:
            lines = done.stderr.decode("utf-8", "replace").split("\n")
            message = " ".join(line.strip() for line in lines if line.strip())[:500]
            raise CheckoutError(self._redact(f"git {_subcommand(args)}: {message or done.returncode}"))
        return done

    def out(self, *args: str) -> str:
        return self.run(*args).stdout.decode().strip()

    # -- before the agent --------------------------------------------------------------

    def clone(self, url: str, ref: str | None) -> str:
        """Clones ``url`` into the empty ``repo_dir`` and checks out ``ref`` (branch, tag or
        commit; None for the default branch). Returns the base commit."""
        if ref is not None and not valid_ref(ref):
            raise CheckoutError(f"invalid ref {ref!r}")
        protocols = protocol_options(url)
        with _local_source_trusted(url) as source_env:
            self.run(
                *protocols,
                "clone",
                "--quiet",
                "--no-checkout",
                "--",
                url,
                str(self.repo_dir),
                cwd=self.repo_dir.parent,
                env=source_env,
            )
        if url != without_credentials(url):
            # The agent can read .git/config: no credentials stay there.
            self.run("remote", "set-url", "origin", without_credentials(url))
        self._identity()
        if ref is None:
            if self.run("rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False).returncode != 0:
                return self._initial_commit()  # an empty repository
            self.run("checkout", "--quiet", "--force", "HEAD")
            return self.out("rev-parse", "HEAD")
        if self._resolves(f"refs/remotes/origin/{ref}"):
            self.run("checkout", "--quiet", "--force", "-B", ref, f"refs/remotes/origin/{ref}")
            return self.out("rev-parse", "HEAD")
        commit = self._resolves(f"refs/tags/{ref}") or self._resolves(ref)
        if commit is None:
            with _local_source_trusted(url) as source_env:
                self.run(*protocols, "fetch", "--quiet", "origin", ref, env=source_env)
            commit = self._resolves("FETCH_HEAD")
        if commit is None:
            raise CheckoutError(f"ref {ref!r} not found")
        self.run("checkout", "--quiet", "--force", "--detach", commit)
        return self.out("rev-parse", "HEAD")

    def init_empty(self) -> str:
        """An empty repository with one empty commit on ``main``; returns that commit."""
        self.repo_dir.mkdir(parents=True, exist_ok=True)
        self.run("init", "--quiet")
        self.run("symbolic-ref", "HEAD", "refs/heads/main")
        self._identity()
        return self._initial_commit()

    def exclude(self, patterns: tuple[str, ...]) -> None:
        """Adds ``patterns`` to the checkout's ``.git/info/exclude``: files the agent's CLI
        keeps for itself stay out of ``git add --all``, and the repository's own
        ``.gitignore`` (which would be part of the patch) stays untouched."""
        if not patterns:
            return
        info = Path(self.out("rev-parse", "--git-path", "info"))
        info = info if info.is_absolute() else self.repo_dir / info
        info.mkdir(parents=True, exist_ok=True)
        with (info / "exclude").open("a", encoding="utf-8") as handle:
            handle.write("\n# the agent CLI's own state (Outpost)\n" + "".join(f"{p}\n" for p in patterns))

    def _identity(self) -> None:
        # Agents that commit need an identity; it lives in the repository, not the patch.
        self.run("config", "user.name", AUTHOR[0])
        self.run("config", "user.email", AUTHOR[1])

    def _initial_commit(self) -> str:
        self.run("commit", "--quiet", "--allow-empty", "--no-verify", "-m", "Outpost: empty workspace")
        return self.out("rev-parse", "HEAD")

    def _resolves(self, name: str) -> str | None:
        done = self.run("rev-parse", "--verify", "--quiet", f"{name}^{{commit}}", check=False)
        return done.stdout.decode().strip() or None if done.returncode == 0 else None

    # -- after the agent ---------------------------------------------------------------

    def patch(self, base: str) -> Patch:
        """Every change against ``base``: edits, new untracked files, deletions, commits."""
        self.run("add", "--all")
        diff_flags = ("--cached", "--binary", "--no-ext-diff", "--no-textconv", "--no-color", "--no-renames")
        diff = self.run("diff", *diff_flags, base).stdout
        names = self.run("diff", "--cached", "--name-only", "-z", "--no-renames", base).stdout
        return Patch(diff=diff, files_changed=len([n for n in names.split(b"\0") if n]))


def valid_ref(ref: str) -> bool:
    """A branch, tag or commit name that cannot be read as an option or a range."""
    return bool(_REF.match(ref)) and ".." not in ref


def protocol_options(url: str) -> list[str]:
    """Only https and ssh, plus the scheme of ``url`` itself (the URL the job names)."""
    options = ["-c", "protocol.allow=never", "-c", "protocol.https.allow=always"]
    options += ["-c", "protocol.ssh.allow=always"]
    scheme = _scheme_of(url)
    if scheme not in ("https", "ssh"):
        options += ["-c", f"protocol.{scheme}.allow=always"]
    return options


@contextmanager
def _local_source_trusted(url: str) -> Iterator[dict[str, str]]:
    """For a file:// URL (local mode's --allow-local-repos), git's environment that names the
    source repository safe: it belongs to the host's user, not to an image's agent user, and
    git reads it only then ("dubious ownership"). Only a global config file does it for every
    git of this image (git 2.39 ignores ``-c safe.directory``); the control plane admitted the
    path. Any other URL: nothing."""
    if not url.startswith("file://"):
        yield {}
        return
    source = unquote(urlsplit(url).path).rstrip("/")
    with tempfile.NamedTemporaryFile("w", prefix="outpost-git-", suffix=".config") as config:
        quoted = [_config_value(path) for path in (source, f"{source}/.git")]
        config.write("[safe]\n" + "".join(f"\tdirectory = {path}\n" for path in quoted))
        config.flush()
        yield {"GIT_CONFIG_GLOBAL": config.name}


def _config_value(text: str) -> str:
    """``text`` as a quoted git config value."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _subcommand(args: tuple[str, ...]) -> str:
    """``clone`` for ``("-c", "protocol.allow=never", "clone", ...)``."""
    rest = list(args)
    while rest[:1] == ["-c"]:
        rest = rest[2:]
    return rest[0] if rest else "?"


def _scheme_of(url: str) -> str:
    match = _SCHEME.match(url)
    if match:
        return match.group(1).lower()
    if _SCP_LIKE.match(url):
        return "ssh"
    return "file"
