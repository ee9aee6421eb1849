"""The DynamoDB key schema, as data shared by the CDK data stack and local mode's bootstrap.

One definition keeps the tables that `outpost dev` creates in the emulator identical to the
ones `cdk deploy` creates, and the control plane's queries in step with both.
Importable without aws-cdk-lib.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Index:
    name: str
    partition_key: str
    sort_key: str | None = None


@dataclass(frozen=True)
class Table:
    id: str  # construct id in the data stack (and pinned logical id prefix)
    settings_field: str  # control-plane setting / env var suffix carrying the generated name
    partition_key: str
    sort_key: str | None = None
    indexes: tuple[Index, ...] = ()
    ttl_attribute: str | None = None


# Dispatch items; auxiliary items (idempotency records, counters, leases) live in the same
# table under prefixed keys ("idem#...", "stat#...", "lease#...") and carry `expires_at`
# when they are meant to expire.
DISPATCHES = Table(
    id="Dispatches",
    settings_field="dispatches_table",
    partition_key="dispatch_id",
    indexes=(
        # a tenant's dispatches, newest first (ScanIndexForward=False)
        Index("by-tenant", "tenant_id", "created_at"),
        # a tenant's dispatches in one status; tenant_status = f"{tenant_id}#{status}"
        Index("by-tenant-status", "tenant_status", "created_at"),
        # every dispatch in one status (scaler, reconciler)
        Index("by-status", "status", "created_at"),
    ),
    ttl_attribute="expires_at",
)

TENANTS = Table(
    id="Tenants",
    settings_field="tenants_table",
    partition_key="tenant_id",
    indexes=(Index("by-key-hash", "api_key_hash"),),
)

AUDIT = Table(
    id="Audit",
    settings_field="audit_table",
    partition_key="tenant_id",
    sort_key="audit_id",  # f"{iso timestamp}#{request id}": time-ordered per tenant
    ttl_attribute="expires_at",
)

TABLES = (DISPATCHES, TENANTS, AUDIT)
