"""Checks on what a dispatch asks the agent to fetch: repository URLs and git refs.

The URL ends up in a `git clone` inside the agent's task, so anything git would read as an
option (`-u...`), a transport helper (`ext::`), a local path (`file://`, `/srv/repo`) or an
address inside the network (loopback, private, link-local, the metadata services) is refused.
Only `https://host/path` and scp-style `git@host:path` pass. Names are not resolved here (a
name can change what it points to at any time); the agent task's egress rules are the second
wall against a public name that points inward.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

MAX_URL_CHARS = 2048
MAX_REF_CHARS = 255

_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_SCP = re.compile(r"^(?P<user>[A-Za-z0-9._-]+)@(?P<host>[^:/\s]+):(?P<path>[^\s]+)$")
_PATH = re.compile(r"^[A-Za-z0-9._~%!$&'()*+,;=:@/-]*$")
_BLOCKED_NAMES = ("localhost", "metadata", "instance-data")
_BLOCKED_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")


class UnsafeRepoError(ValueError):
    pass


def _check_host(host: str) -> None:
    host = host.lower().rstrip(".")
    if not host:
        raise UnsafeRepoError("the URL has no host")
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(literal)
    except ValueError:
        address = None
    if address is not None:
        mapped = getattr(address, "ipv4_mapped", None)
        address = mapped or address
        if not address.is_global or address.is_multicast:
            raise UnsafeRepoError(f"host {host} is a loopback, private, link-local or reserved address")
        return
    labels = host.split(".")
    if not all(_HOST_LABEL.match(label) for label in labels):
        raise UnsafeRepoError(f"host {host!r} is not a valid host name")
    if labels[-1].isdigit() or re.fullmatch(r"0x[0-9a-f]+", labels[-1]):
        # 127.1, 2130706433, 0x7f.0.0.1: numeric forms that resolvers read as addresses
        raise UnsafeRepoError(f"host {host} is a numeric address in a non-standard form")
    if host in _BLOCKED_NAMES or host.endswith(_BLOCKED_SUFFIXES) or host.startswith("metadata."):
        raise UnsafeRepoError(f"host {host} is a local or metadata name")


def check_repo_url(url: str) -> str:
    """Return the URL if it is safe to clone; raise UnsafeRepoError saying why not."""
    if len(url) > MAX_URL_CHARS:
        raise UnsafeRepoError(f"longer than {MAX_URL_CHARS} characters")
    if not url or url != url.strip() or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise UnsafeRepoError("contains spaces or control characters")
    if url.startswith("-"):
        raise UnsafeRepoError("looks like a command-line option")
    if "::" in url.split("/", 1)[0] and not url.lower().startswith("https://"):
        raise UnsafeRepoError("git transport helpers (such as ext::) are not allowed")
    scp = _SCP.match(url)
    if scp and "://" not in url:
        _check_host(scp["host"])
        path = scp["path"]
        if path.startswith(("-", "/")) or ".." in path.split("/") or not _PATH.match(path):
            raise UnsafeRepoError("the repository path must be relative, like org/repo.git")
        return url
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        raise UnsafeRepoError("only https:// URLs or git@host:path are allowed")
    if parts.username is not None or parts.password is not None:
        raise UnsafeRepoError("credentials do not belong in the URL")
    try:
        parts.port  # noqa: B018 - raises ValueError on an invalid port
    except ValueError as error:
        raise UnsafeRepoError("invalid port") from error
    _check_host(parts.hostname or "")
    if not parts.path.strip("/"):
        raise UnsafeRepoError("the URL names no repository")
    if not _PATH.match(parts.path) or ".." in parts.path.split("/"):
        raise UnsafeRepoError("the repository path holds characters git URLs do not use")
    return url


_REF = re.compile(r"^[A-Za-z0-9._/+-]+$")


def check_git_ref(ref: str) -> str:
    """A branch, tag or commit name git accepts, and that cannot pass for an option."""
    if not 0 < len(ref) <= MAX_REF_CHARS:
        raise ValueError(f"must be 1 to {MAX_REF_CHARS} characters")
    if ref.startswith(("-", "/", ".")) or ref.endswith(("/", ".", ".lock")):
        raise ValueError("must not start with '-', '/' or '.', nor end with '/', '.' or '.lock'")
    if ".." in ref or "//" in ref or "@{" in ref or not _REF.match(ref):
        raise ValueError("holds characters or sequences git does not allow in a ref")
    return ref
