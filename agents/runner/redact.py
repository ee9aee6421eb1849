"""Keeping secrets away from the agent and out of everything the runner sends.

The agent's environment is built explicitly from the runner's: every ``OUTPOST_*`` variable
but the agent's model and endpoint (the claim token among them) and any container-credential variable is dropped; the job token
never enters any environment. Whatever leaves the task (log lines, transcript, errors) goes
through a :class:`Redactor` that masks the tokens, credentials in URLs and the values of key
variables, so a transcript does not hand the operator's provider key to a tenant by accident
(it cannot stop an agent that encodes the key on purpose: the key is the agent's to use).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from agents.agent_settings import BASE_URL_ENV, MODEL_ENV

MASK = "[redacted]"
# The agent's model and endpoint (agents/agent_settings.py) are for the agent: the adapter reads them.
AGENT_SETTING_NAMES = (MODEL_ENV, BASE_URL_ENV)
_MIN_SECRET_LEN = 8
_DROPPED_PREFIXES = ("OUTPOST_", "AWS_CONTAINER_CREDENTIALS_", "AWS_CONTAINER_AUTHORIZATION_TOKEN")
_SECRET_NAME = re.compile(r"(API_KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)
# Bounded repetitions: this runs on every output line, some of them megabytes long.
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]{0,31}://)[^/@\s]{1,512}@")


class Redactor:
    def __init__(self, secrets: Iterable[str | None]) -> None:
        unique = {s for s in secrets if s and len(s) >= _MIN_SECRET_LEN}
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted(unique, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if "://" not in text:
            return text
        return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


def secret_values(env: Mapping[str, str]) -> list[str]:
    """Values of variables whose names say they hold a key, token, secret or password."""
    return [value for name, value in env.items() if _SECRET_NAME.search(name)]


def url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def without_credentials(url: str) -> str:
    """``url`` without user and password (scp-style and plain paths are returned unchanged)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def child_environment(env: Mapping[str, str], *, scratch: Path) -> dict[str, str]:
    """The environment for every process the runner starts (git and the agent).

    Built from ``env`` minus the runner's own variables; git never prompts; HOME and TMPDIR
    point into the workspace when the image's are not writable (read-only root file system).
    """
    child = {
        name: value
        for name, value in env.items()
        if not name.startswith(_DROPPED_PREFIXES) or name in AGENT_SETTING_NAMES
    }
    child["GIT_TERMINAL_PROMPT"] = "0"
    child.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    for name, fallback in (("HOME", scratch / "home"), ("TMPDIR", scratch / "tmp")):
        # The system default for TMPDIR; the image may mount scratch space there.
        current = child.get(name) or ("/tmp" if name == "TMPDIR" else "")  # noqa: S108
        if not current or not _writable(Path(current)):
            fallback.mkdir(parents=True, exist_ok=True)
            child[name] = str(fallback)
    return child


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)
