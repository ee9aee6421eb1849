"""Tenant administration (admin key only): create, read, change quotas and agents, rotate keys."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from control_plane.api.deps import AdminDep, SettingsDep, StoreDep, actor_of
from control_plane.models import TenantCreate, TenantPage, TenantPublic, TenantUpdate, TenantWithKey
from control_plane.problems import Problem, not_found
from control_plane.store import NotFoundError, VersionConflictError
from control_plane.store.dispatches import CursorError, read_cursor, sign_cursor
from control_plane.store.tenants import BUDGETS

router = APIRouter(prefix="/tenants", tags=["tenants"])
TenantId = Annotated[str, Path(max_length=64)]
ADMIN_SCOPE = "_admin"  # what admin cursors are bound to (never a tenant id: those start with "t-")


def _with_key(record: Any, api_key: str) -> TenantWithKey:
    return TenantWithKey(**TenantPublic.of(record).model_dump(), api_key=api_key)


@router.post("", status_code=201, response_model=TenantWithKey)
def create_tenant(
    body: TenantCreate, admin: AdminDep, stores: StoreDep, settings: SettingsDep
) -> TenantWithKey:
    """A new tenant; the answer carries its API key, shown this once."""
    record, api_key = stores.tenants.create(
        name=body.name,
        allowed_agents=body.allowed_agents,
        allowed_models=body.allowed_models,
        max_running=settings.default_max_running if body.max_running is None else body.max_running,
        max_queued=settings.default_max_queued if body.max_queued is None else body.max_queued,
        budgets={name: getattr(body, name) for name in BUDGETS},
        actor=actor_of(admin),
    )
    return _with_key(record, api_key)


@router.get("", response_model=TenantPage)
def list_tenants(
    admin: AdminDep,
    stores: StoreDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> TenantPage:
    start = None
    if cursor is not None:
        try:
            start = read_cursor(cursor, key=settings.cursor_key(), tenant_id=ADMIN_SCOPE, binding={})
        except CursorError as error:
            raise Problem(
                400, "Bad Request", f"cursor: {error}", field="cursor", type_="invalid-cursor"
            ) from None
    records, position = stores.tenants.page(limit=limit, start_key=start)
    next_cursor = (
        sign_cursor(key=settings.cursor_key(), tenant_id=ADMIN_SCOPE, binding={}, position=position)
        if position
        else None
    )
    return TenantPage(items=[TenantPublic.of(r) for r in records], next_cursor=next_cursor)


@router.get("/{tenant_id}", response_model=TenantPublic)
def get_tenant(tenant_id: TenantId, admin: AdminDep, stores: StoreDep) -> TenantPublic:
    record = stores.tenants.get(tenant_id=tenant_id)
    if record is None:
        raise not_found("tenant", tenant_id)
    return TenantPublic.of(record)


@router.patch("/{tenant_id}", response_model=TenantPublic)
def update_tenant(tenant_id: TenantId, body: TenantUpdate, admin: AdminDep, stores: StoreDep) -> TenantPublic:
    """Change quotas, allowed agents or models, or the name; fields left out stay as they are."""
    fields = {name: getattr(body, name) for name in body.model_fields_set}
    for name in ("name", "max_running", "max_queued"):
        if name in fields and fields[name] is None:
            raise Problem(422, "Invalid Request", f"{name}: must not be null", field=name)
    if not fields:
        raise Problem(422, "Invalid Request", "body: name at least one field to change", field="body")
    try:
        record = stores.tenants.update(tenant_id=tenant_id, fields=fields, actor=actor_of(admin))
    except NotFoundError:
        raise not_found("tenant", tenant_id) from None
    except VersionConflictError:
        raise Problem(409, "Conflict", "the tenant changed meanwhile; read it and try again") from None
    return TenantPublic.of(record)


@router.post("/{tenant_id}/api-key", response_model=TenantWithKey)
def rotate_api_key(tenant_id: TenantId, admin: AdminDep, stores: StoreDep) -> TenantWithKey:
    """Issue a new API key; the old one stops working at once. The new key is shown this once."""
    try:
        record, api_key = stores.tenants.rotate_key(tenant_id=tenant_id, actor=actor_of(admin))
    except NotFoundError:
        raise not_found("tenant", tenant_id) from None
    except VersionConflictError:
        raise Problem(409, "Conflict", "the tenant changed meanwhile; try again") from None
    return _with_key(record, api_key)


@router.get("/{tenant_id}/audit")
def get_audit(
    tenant_id: TenantId, admin: AdminDep, stores: StoreDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> dict[str, list[dict[str, Any]]]:
    """The tenant's audit trail, newest first."""
    if stores.tenants.get(tenant_id=tenant_id) is None:
        raise not_found("tenant", tenant_id)
    return {"items": stores.audit.list(tenant_id=tenant_id, limit=limit)}
