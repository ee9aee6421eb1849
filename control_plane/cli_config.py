"""Where the ``outpost`` CLI finds the control plane and its keys.

An option wins over the environment (``OUTPOST_URL``, ``OUTPOST_API_KEY``,
``OUTPOST_ADMIN_KEY``), which wins over the config file: ``$OUTPOST_CONFIG``, else
``$XDG_CONFIG_HOME/outpost/config.toml`` (``~/.config/outpost/config.toml``), e.g.::

    url = "https://outpost.example.com"
    api_key = "op_..."
    # admin_key = "op_admin_..."   (for `outpost tenants`)

A file holding keys must be readable by its owner only (mode 600); a looser one is refused,
as ssh refuses a readable private key.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from control_plane.client import OutpostError

KEYS = ("url", "api_key", "admin_key")


@dataclass(frozen=True)
class CliSettings:
    url: str
    api_key: str
    admin_key: str


def config_path() -> Path:
    if os.environ.get("OUTPOST_CONFIG"):
        return Path(os.environ["OUTPOST_CONFIG"])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "outpost" / "config.toml"


def _read(path: Path) -> dict[str, str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if os.environ.get("OUTPOST_CONFIG"):
            raise OutpostError(f"OUTPOST_CONFIG names {path}, which does not exist") from None
        return {}
    except OSError as error:
        raise OutpostError(f"cannot read {path}: {error.strerror}") from None
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise OutpostError(f"{path} is not valid TOML: {error}") from None
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise OutpostError(f"{path}: unknown setting {unknown[0]!r} (known: {', '.join(KEYS)})")
    if any(not isinstance(v, str) for v in data.values()):
        raise OutpostError(f"{path}: every setting is a string")
    if ({"api_key", "admin_key"} & set(data)) and stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise OutpostError(f"{path} holds a key but others may read it: chmod 600 {path}")
    return dict(data)


def resolve(*, url: str | None, api_key: str | None, admin_key: str | None) -> CliSettings:
    """Options (already merged with the environment by the CLI) over the config file."""
    given = {"url": url, "api_key": api_key, "admin_key": admin_key}
    if all(given.values()):
        return CliSettings(url or "", api_key or "", admin_key or "")
    stored = _read(config_path())
    merged = {k: given[k] or stored.get(k, "") for k in KEYS}
    return CliSettings(**merged)
