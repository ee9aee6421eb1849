"""Is an agent's provider key there? Asked when a dispatch is made, so that a job whose key
was never stored is refused with a 409 naming the fix, instead of failing in its task.

Where a task's key comes from depends on the runtime, and so does the check:

- local and container runtimes (``outpost dev``): the variable the agent reads
  (``PROVIDER_KEY_ENV``), from the environment of ``outpost dev`` — ``missing_key_variable``;
- ECS: the agent's Secrets Manager secret, whose AWSCURRENT version the model gateway reads
  (control_plane/gateway/keys.py; no agent task definition names it). The stack creates the
  provider secrets without a value (constructs/provider_secrets.py), and a secret without a
  value has no version staged AWSCURRENT (DescribeSecret's ``VersionIdsToStages``).
  ``SecretKeys`` asks DescribeSecret, which reads metadata only: the check never fetches a
  key. Answers are cached (a key that is there for minutes, a missing one for seconds, so
  that a put-secret-value is seen soon), which keeps dispatch fast.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from agents.registry import AGENTS, PROVIDER_KEY_ENV
from control_plane.aws import new_session

log = logging.getLogger(__name__)

CURRENT = "AWSCURRENT"
PRESENT_TTL_S = 300.0  # a stored key is not unset by anything short of deleting its secret
MISSING_TTL_S = 10.0  # an operator who just stored the key is not kept waiting long


def key_variable(agent: str) -> str | None:
    """The variable an agent's CLI reads its provider key from; None for an agent without one."""
    provider = AGENTS[agent].secret if agent in AGENTS else None
    return PROVIDER_KEY_ENV[provider] if provider else None


def missing_key_variable(agent: str, environment: Mapping[str, str]) -> str | None:
    """Local mode: why ``agent`` has no key in ``environment`` (the one its tasks get it
    from), or None when it has one or needs none."""
    variable = key_variable(agent)
    if variable is None or environment.get(variable, "").strip():
        return None
    return (
        f"agent '{agent}' has no provider key: set {variable} in the environment of `outpost dev` "
        '(README, "Running the real agents on this host")'
    )


def secrets_client(region: str, endpoint_url: str | None = None) -> Any:
    """A Secrets Manager client with short timeouts: it is asked while a dispatch waits."""
    config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
    return new_session(region).client("secretsmanager", endpoint_url=endpoint_url, config=config)


class SecretKeys:
    """Whether each agent's provider-key secret holds a value (ECS runtime)."""

    def __init__(
        self,
        *,
        client: Any,
        secrets: Mapping[str, str],  # agent -> ARN of its provider key's secret
        present_ttl_s: float = PRESENT_TTL_S,
        missing_ttl_s: float = MISSING_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.secrets = dict(secrets)
        self.present_ttl_s = present_ttl_s
        self.missing_ttl_s = missing_ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, str | None]] = {}  # ARN -> (expires, why missing)

    def missing(self, agent: str) -> str | None:
        """Why ``agent``'s key cannot reach its task, or None (also for an agent without a key,
        and when Secrets Manager cannot be asked: the check is a courtesy, the task is the proof)."""
        arn = self.secrets.get(agent)
        if arn is None:
            return None
        now = self._clock()
        with self._lock:
            cached = self._cache.get(arn)
        if cached is not None and cached[0] > now:
            return _for_agent(agent, cached[1])
        problem, ttl = self._ask(agent, arn)
        with self._lock:
            self._cache[arn] = (now + ttl, problem)
        return _for_agent(agent, problem)

    def _ask(self, agent: str, arn: str) -> tuple[str | None, float]:
        region = arn.split(":")[3] if arn.count(":") >= 6 else None
        where = f"--region {region} " if region else ""
        try:
            secret = self.client.describe_secret(SecretId=arn)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return f"its provider key's secret {arn} does not exist: deploy the stage's Data stack", (
                    self.missing_ttl_s
                )
            log.warning("cannot check the provider key of %s (%s): %s", agent, arn, error)
            return None, self.missing_ttl_s
        except BotoCoreError as error:
            log.warning("cannot check the provider key of %s (%s): %s", agent, arn, error)
            return None, self.missing_ttl_s
        name = secret.get("Name") or arn
        store = (
            f"`aws secretsmanager put-secret-value {where}--secret-id {name} "
            f'--secret-string "${key_variable(agent)}"`'
        )
        if secret.get("DeletedDate"):
            return (
                f"its provider key's secret {name} is scheduled for deletion: restore it with "
                f"`aws secretsmanager restore-secret {where}--secret-id {name}`",
                self.missing_ttl_s,
            )
        stages = secret.get("VersionIdsToStages") or {}
        if not any(CURRENT in labels for labels in stages.values()):
            return (
                f"its provider key's secret {name} has no value: store the key with {store}",
                self.missing_ttl_s,
            )
        return None, self.present_ttl_s


def _for_agent(agent: str, problem: str | None) -> str | None:
    return None if problem is None else f"agent '{agent}' cannot run: {problem}"
