"""The model gateway's provider keys on ECS: Secrets Manager values (on the emulator), kept for a
while so that a call costs no secret read, and known to be kept (the gateway then admits a
call on its event loop, without a worker thread)."""

from __future__ import annotations

import uuid
from typing import Any

from control_plane.gateway.keys import KEY_TTL_S, SecretKeyValues
from control_plane.runtime.provider_keys import secrets_client


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingClient:
    """The Secrets Manager client, counting its GetSecretValue requests."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.reads = 0

    def get_secret_value(self, **kwargs: Any) -> Any:
        self.reads += 1
        return self.client.get_secret_value(**kwargs)


def test_a_key_is_read_once_per_ttl_and_known_while_kept(moto_endpoint: str) -> None:
    real = secrets_client("us-east-1", moto_endpoint)
    arn = real.create_secret(Name=f"gateway-key-{uuid.uuid4().hex[:12]}", SecretString=" key-1 \n")["ARN"]
    client, clock = CountingClient(real), Clock()
    keys = SecretKeyValues(client=client, secrets={"claude": arn}, clock=clock)
    assert keys.known("shell")  # no secret: nothing to read
    assert not keys.known("claude")
    assert [keys.key("claude") for _ in range(3)] == ["key-1"] * 3
    assert client.reads == 1 and keys.known("claude")
    real.put_secret_value(SecretId=arn, SecretString="key-2")  # rotated
    clock.now += KEY_TTL_S - 1
    assert keys.key("claude") == "key-1" and keys.known("claude")
    clock.now += 1  # its time is up: read again
    assert not keys.known("claude")
    assert keys.key("claude") == "key-2" and client.reads == 2
    keys.forget("claude")  # the provider refused it: read at the next call
    assert not keys.known("claude")
    assert keys.key("claude") == "key-2" and client.reads == 3
