"""The tenant store: tenants, their quotas and allowed agents, and their API keys (hashes only).

An API key is `op_` + 43 random URL-safe characters. Only its SHA-256 is stored (a key this
random needs no slow hash), with a short visible prefix so that people can tell keys apart.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from typing import Any

from control_plane.store.audit import Actor, AuditLog
from control_plane.store.codec import (
    conditionally,
    decode_item,
    encode,
    encode_item,
    iso,
    now,
    update_expression,
)
from control_plane.store.errors import NotFoundError, VersionConflictError

KEY_PREFIX = "op_"
VISIBLE_PREFIX_CHARS = 11  # "op_" + 8 random characters
BUDGETS = ("budget_daily_usd", "budget_monthly_usd", "budget_dispatch_usd")
UPDATABLE = frozenset({"name", "allowed_agents", "allowed_models", "max_running", "max_queued", *BUDGETS})


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass(frozen=True)
class TenantRecord:
    tenant_id: str
    name: str
    api_key_hash: str
    api_key_prefix: str
    max_running: int
    max_queued: int
    allowed_agents: list[str] | None = None  # None: every agent in the registry
    # the models its dispatches may ask for; None: whatever each agent allows (agent settings)
    allowed_models: list[str] | None = None
    # model spend limits in US dollars (control_plane/budgets.py); None: no limit
    budget_daily_usd: float | None = None  # per UTC day
    budget_monthly_usd: float | None = None  # per UTC calendar month
    budget_dispatch_usd: float | None = None  # per dispatch
    created_at: str = ""
    updated_at: str = ""
    version: int = 1
    # admitted, unfinished dispatches: kept by DispatchStore's transactions, never by `_update`
    run_slots: int = 0

    def allows(self, agent: str) -> bool:
        return self.allowed_agents is None or agent in self.allowed_agents

    def allows_model(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models

    def has_budget(self) -> bool:
        return any(
            limit is not None
            for limit in (self.budget_daily_usd, self.budget_monthly_usd, self.budget_dispatch_usd)
        )

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> TenantRecord:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in item.items() if k in known})


# How many API keys' tenant ids one process remembers (a key belongs to one tenant for good).
KEY_CACHE_SIZE = 10_000


class TenantStore:
    def __init__(self, *, client: Any, table: str, audit: AuditLog) -> None:
        self._client = client
        self._table = table
        self._audit = audit
        self._tenant_of_key: OrderedDict[str, str] = OrderedDict()  # key hash -> tenant id
        self._key_lock = threading.Lock()

    def create(
        self,
        *,
        name: str,
        max_running: int,
        max_queued: int,
        allowed_agents: list[str] | None,
        actor: Actor,
        allowed_models: list[str] | None = None,
        budgets: dict[str, float | None] | None = None,
    ) -> tuple[TenantRecord, str]:
        """A new tenant and its API key; the key is returned here and never again."""
        api_key = new_api_key()
        at = iso(now())
        record = TenantRecord(
            tenant_id="t-" + uuid.uuid4().hex,
            name=name,
            api_key_hash=hash_api_key(api_key),
            api_key_prefix=api_key[:VISIBLE_PREFIX_CHARS],
            max_running=max_running,
            max_queued=max_queued,
            allowed_agents=allowed_agents,
            allowed_models=allowed_models,
            budget_daily_usd=(budgets or {}).get("budget_daily_usd"),
            budget_monthly_usd=(budgets or {}).get("budget_monthly_usd"),
            budget_dispatch_usd=(budgets or {}).get("budget_dispatch_usd"),
            created_at=at,
            updated_at=at,
        )
        self._client.put_item(
            TableName=self._table,
            Item=encode_item(asdict(record)),
            ConditionExpression="attribute_not_exists(tenant_id)",
        )
        self._audit.record(
            actor=actor,
            action="tenant.create",
            tenant_id=record.tenant_id,
            target=record.tenant_id,
            details={"name": name, "key_prefix": record.api_key_prefix},
        )
        return record, api_key

    def get(self, *, tenant_id: str) -> TenantRecord | None:
        reply = self._client.get_item(
            TableName=self._table, Key={"tenant_id": encode(tenant_id)}, ConsistentRead=True
        )
        return TenantRecord.from_item(decode_item(reply["Item"])) if "Item" in reply else None

    def page(
        self, *, limit: int, start_key: dict[str, Any] | None = None
    ) -> tuple[list[TenantRecord], dict[str, Any] | None]:
        """A page of all tenants (admin listing; a scan, fine for the few tenants one install has)."""
        kwargs: dict[str, Any] = {"TableName": self._table, "Limit": limit, "ConsistentRead": True}
        if start_key:
            kwargs["ExclusiveStartKey"] = {k: encode(v) for k, v in start_key.items()}
        reply = self._client.scan(**kwargs)
        records = [TenantRecord.from_item(decode_item(i)) for i in reply.get("Items", [])]
        last = reply.get("LastEvaluatedKey")
        return records, decode_item(last) if last else None

    def by_api_key(self, *, api_key: str) -> TenantRecord | None:
        """The tenant holding this key, or None.

        The index finds the candidate; the consistent read of the item then confirms the hash,
        so a key rotated out stops working at once even while the index still lags. A key
        belongs to one tenant for good, so the candidate is remembered: a request with a known
        key costs that one read (it is on every API call's path).
        """
        if not api_key.startswith(KEY_PREFIX):
            return None
        digest = hash_api_key(api_key)
        with self._key_lock:
            tenant_id = self._tenant_of_key.get(digest)
        if tenant_id is None:
            reply = self._client.query(
                TableName=self._table,
                IndexName="by-key-hash",
                KeyConditionExpression="api_key_hash = :h",
                ExpressionAttributeValues={":h": encode(digest)},
                Limit=1,
            )
            items = reply.get("Items", [])
            if not items:
                return None
            tenant_id = str(decode_item(items[0])["tenant_id"])
        tenant = self.get(tenant_id=tenant_id)
        if tenant is None or not hmac.compare_digest(tenant.api_key_hash, digest):
            with self._key_lock:
                self._tenant_of_key.pop(digest, None)  # rotated out or deleted
            return None
        with self._key_lock:
            self._tenant_of_key[digest] = tenant_id
            self._tenant_of_key.move_to_end(digest)
            if len(self._tenant_of_key) > KEY_CACHE_SIZE:
                self._tenant_of_key.popitem(last=False)
        return tenant

    def rotate_key(self, *, tenant_id: str, actor: Actor) -> tuple[TenantRecord, str]:
        """Replace the tenant's key; the old one stops working. Returns the new key once."""
        api_key = new_api_key()
        record = self._update(
            tenant_id=tenant_id,
            fields={"api_key_hash": hash_api_key(api_key), "api_key_prefix": api_key[:VISIBLE_PREFIX_CHARS]},
            expected_version=None,
        )
        self._audit.record(
            actor=actor,
            action="tenant.rotate_key",
            tenant_id=tenant_id,
            target=tenant_id,
            details={"key_prefix": record.api_key_prefix, "version": record.version},
        )
        return record, api_key

    def update(
        self, *, tenant_id: str, fields: dict[str, Any], actor: Actor, expected_version: int | None = None
    ) -> TenantRecord:
        """Change quotas, allowed agents or name, conditional on the version."""
        unknown = set(fields) - UPDATABLE
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        record = self._update(tenant_id=tenant_id, fields=fields, expected_version=expected_version)
        self._audit.record(
            actor=actor,
            action="tenant.update",
            tenant_id=tenant_id,
            target=tenant_id,
            details={**fields, "version": record.version},
        )
        return record

    def _update(
        self, *, tenant_id: str, fields: dict[str, Any], expected_version: int | None
    ) -> TenantRecord:
        current = self.get(tenant_id=tenant_id)
        if current is None:
            raise NotFoundError("tenant", tenant_id)
        version = current.version if expected_version is None else expected_version
        updates = {**fields, "updated_at": iso(now()), "version": version + 1}
        names = {"#ver": "version"}
        values: dict[str, Any] = {":expected": encode(version)}
        expression = update_expression(updates, names=names, values=values)
        if not conditionally(
            self._client.update_item,
            TableName=self._table,
            Key={"tenant_id": encode(tenant_id)},
            UpdateExpression=expression,
            ConditionExpression="#ver = :expected",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        ):
            raise VersionConflictError("tenant", tenant_id, version)
        return replace(current, **updates)
