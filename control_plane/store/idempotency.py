"""Idempotency keys for POST /dispatch, kept in the dispatches table under `idem#` keys.

The first request with a key wins a conditional write that binds the key to a dispatch id and
to a hash of the request body; that works across replicas because DynamoDB, not memory,
decides the winner. Records live at least `ttl_s` (>= 24 h); DynamoDB's TTL removes them
some time after `expires_at`, and an expired record is treated as absent until then.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from control_plane.store.codec import conditionally, decode_item, encode, encode_item, iso, now

MAX_KEY_CHARS = 255


@dataclass(frozen=True)
class IdempotencyRecord:
    dispatch_id: str
    request_hash: str
    created: bool  # True: this call bound the key; False: an earlier request had


class IdempotencyStore:
    def __init__(self, *, client: Any, table: str, ttl_s: int) -> None:
        self._client = client
        self._table = table
        self._ttl_s = ttl_s

    @staticmethod
    def _item_key(tenant_id: str, key: str) -> str:
        # hashed: the key is caller-chosen text of any shape; the tenant scopes it
        return f"idem#{tenant_id}#{hashlib.sha256(key.encode()).hexdigest()}"

    def bind(self, *, tenant_id: str, key: str, request_hash: str, dispatch_id: str) -> IdempotencyRecord:
        """Bind `key` to `dispatch_id` unless a live binding exists; return the binding in force."""
        for _ in range(3):  # the record may expire and vanish between our write and our read
            bound = self._try_bind(self._item_key(tenant_id, key), request_hash, dispatch_id)
            if bound is not None:
                return bound
        raise RuntimeError("idempotency record kept changing")

    def _try_bind(self, item_key: str, request_hash: str, dispatch_id: str) -> IdempotencyRecord | None:
        moment = now()
        item = {
            "dispatch_id": item_key,
            "target_dispatch_id": dispatch_id,
            "request_hash": request_hash,
            "bound_at": iso(moment),
            "expires_at": int(moment.timestamp()) + self._ttl_s,
        }
        if conditionally(
            self._client.put_item,
            TableName=self._table,
            Item=encode_item(item),
            ConditionExpression="attribute_not_exists(dispatch_id) OR expires_at < :now",
            ExpressionAttributeValues={":now": encode(int(moment.timestamp()))},
        ):
            return IdempotencyRecord(dispatch_id=dispatch_id, request_hash=request_hash, created=True)
        reply = self._client.get_item(
            TableName=self._table, Key={"dispatch_id": encode(item_key)}, ConsistentRead=True
        )
        if "Item" not in reply:
            return None
        existing = decode_item(reply["Item"])
        return IdempotencyRecord(
            dispatch_id=existing["target_dispatch_id"], request_hash=existing["request_hash"], created=False
        )
