"""Who is calling: a tenant (its API key), the admin (the admin key), or nobody.

Keys arrive as `Authorization: Bearer <key>`. A tenant key never opens tenant administration
and the admin key is not a tenant: each side gets 403 at the other's door. A missing or
unknown key gets 401 with the same answer, whatever the reason.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request

from control_plane.problems import Problem
from control_plane.store import Stores
from control_plane.store.tenants import TenantRecord

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="outpost"'}
MAX_KEY_CHARS = 256


@dataclass(frozen=True)
class Caller:
    tenant: TenantRecord | None  # None for the admin
    is_admin: bool


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Problem(401, "Unauthorized", "send Authorization: Bearer <api key>", headers=_CHALLENGE)
    return key.strip()


def identify(request: Request, *, stores: Stores, admin_key: str) -> Caller:
    key = _bearer(request)
    if len(key) <= MAX_KEY_CHARS:
        if hmac.compare_digest(key.encode(), admin_key.encode()):
            return Caller(tenant=None, is_admin=True)
        tenant = stores.tenants.by_api_key(api_key=key)
        if tenant is not None:
            return Caller(tenant=tenant, is_admin=False)
    raise Problem(401, "Unauthorized", "the API key is not valid", headers=_CHALLENGE)


def require_tenant(caller: Caller) -> TenantRecord:
    if caller.tenant is None:
        raise Problem(403, "Forbidden", "the admin key administers tenants; dispatch with a tenant key")
    return caller.tenant


def require_admin(caller: Caller) -> None:
    if not caller.is_admin:
        raise Problem(403, "Forbidden", "tenant administration needs the admin key")
