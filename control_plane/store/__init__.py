"""Durable state of the control plane on DynamoDB and S3; one object per kind of record.

`Stores.from_settings` builds the whole set; the API and the engine share it (app.state.stores).
"""

from __future__ import annotations

from dataclasses import dataclass

from control_plane.aws import AwsClients
from control_plane.budgets import Budgets
from control_plane.settings import Settings
from control_plane.store.artifacts import ArtifactStore
from control_plane.store.audit import Actor, AuditLog
from control_plane.store.dispatches import DispatchRecord, DispatchStore
from control_plane.store.errors import NotFoundError, StoreError, VersionConflictError
from control_plane.store.idempotency import IdempotencyStore
from control_plane.store.logs import LogStore
from control_plane.store.stats import FleetStats
from control_plane.store.tenants import TenantRecord, TenantStore
from control_plane.store.usage import UsageStore

__all__ = [
    "Actor",
    "ArtifactStore",
    "AuditLog",
    "DispatchRecord",
    "DispatchStore",
    "FleetStats",
    "IdempotencyStore",
    "LogStore",
    "NotFoundError",
    "StoreError",
    "Stores",
    "TenantRecord",
    "TenantStore",
    "UsageStore",
    "VersionConflictError",
]


@dataclass(frozen=True)
class Stores:
    dispatches: DispatchStore
    tenants: TenantStore
    audit: AuditLog
    idempotency: IdempotencyStore
    stats: FleetStats
    logs: LogStore
    artifacts: ArtifactStore
    usage: UsageStore
    budgets: Budgets  # the API's view: refuses new work over budget (the engine's also ends jobs)

    @classmethod
    def from_settings(cls, settings: Settings, clients: AwsClients) -> Stores:
        ddb = clients.dynamodb
        audit = AuditLog(client=ddb, table=settings.audit_table, ttl_days=settings.audit_ttl_days)
        stats = FleetStats(client=ddb, table=settings.dispatches_table)
        tenants = TenantStore(client=ddb, table=settings.tenants_table, audit=audit)
        return cls(
            dispatches=DispatchStore(
                client=ddb,
                table=settings.dispatches_table,
                tenants_table=settings.tenants_table,
                audit=audit,
                stats=stats,
            ),
            tenants=tenants,
            audit=audit,
            idempotency=IdempotencyStore(
                client=ddb, table=settings.dispatches_table, ttl_s=settings.idempotency_ttl_s
            ),
            stats=stats,
            logs=LogStore(
                s3=clients.s3, bucket=settings.artifacts_bucket, dynamodb=ddb, table=settings.dispatches_table
            ),
            artifacts=ArtifactStore(
                s3=clients.s3, bucket=settings.artifacts_bucket, url_ttl_s=settings.artifact_url_ttl_s
            ),
            usage=UsageStore(client=ddb, table=settings.dispatches_table),
            budgets=Budgets(
                client=ddb,
                table=settings.dispatches_table,
                tenant=lambda tenant_id: tenants.get(tenant_id=tenant_id),
            ),
        )
