"""The audit trail: one record per mutation (who, what, when, request id), expiring by TTL.

Records are keyed by tenant, then time (schema.AUDIT), so an operator reads a tenant's history
in order. Mutations of the platform itself (no tenant) are filed under SYSTEM_TENANT.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from control_plane.store.codec import decode_item, encode, encode_item, iso, now

SYSTEM_TENANT = "_system"
log = logging.getLogger("outpost.audit")


@dataclass(frozen=True)
class Actor:
    """Who causes a mutation: a tenant, the admin, or a part of the engine; and in which request."""

    kind: str  # "tenant" | "admin" | "system"
    id: str
    request_id: str

    @classmethod
    def system(cls, component: str, request_id: str | None = None) -> Actor:
        return cls(kind="system", id=component, request_id=request_id or f"sys-{uuid.uuid4().hex}")

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


class AuditLog:
    def __init__(self, *, client: Any, table: str, ttl_days: int) -> None:
        self._client = client
        self._table = table
        self._ttl = timedelta(days=ttl_days)

    def record(
        self, *, actor: Actor, action: str, tenant_id: str | None, target: str, details: dict[str, Any]
    ) -> None:
        """Write one audit record. Called after the mutation succeeded: a failure here is logged
        loudly rather than undoing a change the caller has already seen happen."""
        try:
            self._client.put_item(
                **self.put(actor=actor, action=action, tenant_id=tenant_id, target=target, details=details)
            )
        except Exception:
            log.exception("audit record not written", extra={"action": action, "target": target})

    def put(
        self, *, actor: Actor, action: str, tenant_id: str | None, target: str, details: dict[str, Any]
    ) -> dict[str, Any]:
        """The PutItem request of one audit record, for a transaction that also makes the change."""
        at = now()
        item = {
            "tenant_id": tenant_id or SYSTEM_TENANT,
            "audit_id": f"{iso(at)}#{actor.request_id}#{uuid.uuid4().hex[:8]}",
            "at": iso(at),
            "actor": str(actor),
            "action": action,
            "target": target,
            "request_id": actor.request_id,
            "details": details,
            "expires_at": int((at + self._ttl).timestamp()),
        }
        return {"TableName": self._table, "Item": encode_item(item)}

    def list(self, *, tenant_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """A tenant's audit records, newest first."""
        reply = self._client.query(
            TableName=self._table,
            KeyConditionExpression="tenant_id = :t",
            ExpressionAttributeValues={":t": encode(tenant_id)},
            ScanIndexForward=False,
            Limit=limit,
        )
        return [decode_item(item) for item in reply.get("Items", [])]
