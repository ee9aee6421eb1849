"""Checks on what a dispatch asks the agent to fetch: repository URLs and git refs.

The URL ends up in a `git clone` inside the agent's task, so anything git would read as an
option (`-u...`), a transport helper (`ext::`), a local path (`file://`, `/srv/repo`) or an
address inside the network (loopback, private, link-local, the metadata services) is refused.
Only `https://host/path` passes: the agent images hold no ssh client and agent egress is
port 443 only, so `git@host:path` and `ssh://` could never clone; they are refused with a hint.

One exception, for local mode only: ``outpost dev --allow-local-repos DIR`` lets a dispatch
name a ``file://`` repository inside DIR (``check_local_repo_url``: resolved, so neither a
symlink nor ``..`` leads out of DIR). Another, in every mode: repositories on the operator's
own GitHub (``OUTPOST_GITHUB_URL``, which may be a GitHub Enterprise Server on a private
address) skip the address checks. Both depend on settings, so the route decides
(control_plane/api/repos.py), not the API model.

Two layers:
- ``check_repo_url`` is pure (no network);
- ``check_repo_resolution`` resolves the host and refuses a name that answers with an internal
  address (``127.0.0.1.nip.io``). The API route runs both in its worker thread. A name can
  change what it points to at any time, so this is defence in depth; the agent task's egress
  rules are the wall.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

MAX_URL_CHARS = 2048
MAX_REF_CHARS = 255

_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_SCP = re.compile(r"^(?P<user>[A-Za-z0-9._-]+)@(?P<host>[^:/\s]+):(?P<path>[^\s]+)$")
_PATH = re.compile(r"^[A-Za-z0-9._~%!$&'()*+,;=:@/-]*$")
_BLOCKED_NAMES = ("localhost", "metadata", "instance-data")
_BLOCKED_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")
# IPv6 prefixes that carry an IPv4 address a translator or tunnel would reach: NAT64 (the
# well-known and the local-use prefix) and the deprecated IPv4-compatible form (::a.b.c.d).
# IPv4-mapped, 6to4 and Teredo have their own properties in the ipaddress module.
_EMBEDS_IPV4 = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
    ipaddress.IPv6Network("::/96"),
)
_HTTPS_HINT = "Outpost clones over HTTPS only; write it as https://{host}/{path}"

# socket.getaddrinfo's shape: (host, port, ...) -> [(family, type, proto, canonname, sockaddr)]
Resolver = Callable[..., Sequence[tuple[Any, ...]]]


class UnsafeRepoError(ValueError):
    pass


def check_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address, shown: str) -> None:
    """Refuse any address that is not globally routable, or that hides an IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and (
        address.ipv4_mapped or address.sixtofour or address.teredo or any(address in n for n in _EMBEDS_IPV4)
    ):
        raise UnsafeRepoError(f"host {shown} is an IPv6 address that embeds an IPv4 address")
    if not address.is_global or address.is_multicast:
        raise UnsafeRepoError(f"host {shown} is a loopback, private, link-local or reserved address")


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
        check_address(address, host)
        return
    labels = host.split(".")
    if len(host) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise UnsafeRepoError(f"host {host!r} is not a valid host name")
    if labels[-1].isdigit() or re.fullmatch(r"0x[0-9a-f]+", labels[-1]):
        # 127.1, 2130706433, 0x7f.0.0.1, 0251.0376.0251.0376: forms resolvers read as addresses
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
        hint = _HTTPS_HINT.format(host=scp["host"], path=scp["path"].lstrip("/"))
        raise UnsafeRepoError(f"ssh repository URLs (user@host:path) cannot be cloned; {hint}")
    parts = urlsplit(url)
    if parts.scheme.lower() == "ssh":
        hint = _HTTPS_HINT.format(host=parts.hostname or "host", path=parts.path.lstrip("/"))
        raise UnsafeRepoError(f"ssh:// repository URLs cannot be cloned; {hint}")
    if parts.scheme.lower() != "https":
        raise UnsafeRepoError("only https://host/path URLs are allowed")
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


def check_repo_resolution(url: str, resolve: Resolver | None = None) -> None:
    """Refuse a URL (already passed by ``check_repo_url``) whose host name resolves to an
    internal address. ``resolve`` defaults to socket.getaddrinfo.

    A name that does not resolve here passes: it points nowhere now, the clone then fails with
    git's own message, and the control plane's resolver may not see every public zone (the
    tests and local mode run without internet DNS). Any answer at all must be global.
    """
    host = (urlsplit(url).hostname or "").rstrip(".")
    try:
        ipaddress.ip_address(host)
        return  # an address literal: check_repo_url judged it already
    except ValueError:
        pass
    try:
        answers = (resolve or socket.getaddrinfo)(host, 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):  # no answer (or a name the resolver rejects)
        return
    for answer in answers:
        try:
            address = ipaddress.ip_address(str(answer[4][0]).split("%", 1)[0])
        except (ValueError, IndexError, TypeError) as error:
            raise UnsafeRepoError(f"host {host} resolves to something that is not an address") from error
        try:
            check_address(address, f"{host} ({address})")
        except UnsafeRepoError as error:
            raise UnsafeRepoError(f"{error}; names that point inside a network are refused") from None


def is_local_repo_url(url: str) -> bool:
    return url[:7].lower() == "file://"


def check_local_repo_url(url: str, root: Path | None) -> str:
    """A ``file://`` repository inside ``root`` (local mode with ``--allow-local-repos``);
    returns the URL of the resolved directory, which is what the runner clones. Raises
    UnsafeRepoError when local repositories are not allowed (``root`` None) or the path leads
    outside ``root``."""
    if root is None:
        raise UnsafeRepoError("only https://host/path URLs are allowed")
    if len(url) > MAX_URL_CHARS or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise UnsafeRepoError(f"at most {MAX_URL_CHARS} characters, without spaces or control characters")
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        raise UnsafeRepoError("a local repository URL is file:///absolute/path, with no host or query")
    decoded = unquote(parts.path)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded):  # %00 and the like, once decoded
        raise UnsafeRepoError("the path holds control characters")
    allowed = root.resolve()
    path = Path(decoded).resolve()  # follows every symlink and `..`
    if not path.is_relative_to(allowed):
        raise UnsafeRepoError(
            f"local repositories must be inside {allowed} (`outpost dev --allow-local-repos`)"
        )
    if not path.is_dir():
        raise UnsafeRepoError(f"{path} is not a directory")
    return path.as_uri()


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
