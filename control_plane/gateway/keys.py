"""The real provider keys, which only the gateway holds.

- Local mode (``outpost dev``, local and container runtimes): the variable the agent's CLI
  would read (``PROVIDER_KEY_ENV``), from the control plane's own environment.
- ECS: the value of the agent's provider secret (``OUTPOST_AGENT_SECRETS``: agent -> secret
  ARN), read with GetSecretValue and kept for ``ttl_s`` (5 minutes), so that a call costs no
  Secrets Manager request and a rotated key is picked up within minutes; a provider's 401
  drops the cached value at once (the key may have been rotated).

Keys never appear in a log line, an error message or an audit entry.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from control_plane.runtime.provider_keys import key_variable

log = logging.getLogger("outpost.gateway")
KEY_TTL_S = 300.0


class ProviderKeys(Protocol):
    def key(self, agent: str) -> str | None:
        """The agent's provider key, or None when there is none to use."""

    def forget(self, agent: str) -> None:
        """Drop a cached key: the provider refused it."""

    def known(self, agent: str) -> bool:
        """Whether ``key`` answers from memory, without a read (the gateway's event loop may ask)."""


class EnvironmentKeys:
    def __init__(self, environment: Mapping[str, str] | None = None) -> None:
        self._environment = environment if environment is not None else os.environ

    def key(self, agent: str) -> str | None:
        variable = key_variable(agent)
        if variable is None:
            return None
        return (self._environment.get(variable) or "").strip() or None

    def forget(self, agent: str) -> None:
        pass

    def known(self, agent: str) -> bool:
        return True


class SecretKeyValues:
    """Provider keys from Secrets Manager (ECS), cached per secret."""

    def __init__(
        self,
        *,
        client: Any,
        secrets: Mapping[str, str],  # agent -> ARN of its provider key's secret
        ttl_s: float = KEY_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.secrets = dict(secrets)
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, str]] = {}  # ARN -> (expires, key)

    def key(self, agent: str) -> str | None:
        arn = self.secrets.get(agent)
        if arn is None:
            return None
        with self._lock:
            cached = self._cache.get(arn)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        try:
            value = self.client.get_secret_value(SecretId=arn).get("SecretString") or ""
        except (ClientError, BotoCoreError) as error:
            code = getattr(error, "response", {}).get("Error", {}).get("Code", type(error).__name__)
            log.warning("cannot read the provider key of agent %s (%s): %s", agent, arn, code)
            return cached[1] if cached is not None else None  # a stale key beats none
        key = value.strip()
        if not key:
            return None
        with self._lock:
            self._cache[arn] = (self._clock() + self.ttl_s, key)
        return key

    def forget(self, agent: str) -> None:
        arn = self.secrets.get(agent)
        with self._lock:
            self._cache.pop(arn or "", None)

    def known(self, agent: str) -> bool:
        arn = self.secrets.get(agent)
        if arn is None:
            return True  # no secret: None, at once
        with self._lock:
            cached = self._cache.get(arn)
        return cached is not None and cached[0] > self._clock()
