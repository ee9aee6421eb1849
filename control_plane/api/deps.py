"""Request dependencies, as Annotated aliases the handlers declare."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from control_plane.auth import Caller, identify, require_admin, require_tenant
from control_plane.aws import AwsClients
from control_plane.hooks import TaskControl
from control_plane.observability import current_request_id
from control_plane.settings import Settings
from control_plane.store import Actor, Stores
from control_plane.store.tenants import TenantRecord


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_stores(request: Request) -> Stores:
    stores: Stores = request.app.state.stores
    return stores


def get_clients(request: Request) -> AwsClients:
    clients: AwsClients = request.app.state.clients
    return clients


def get_task_control(request: Request) -> TaskControl:
    control: TaskControl = request.app.state.task_control
    return control


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Stores, Depends(get_stores)]
ClientsDep = Annotated[AwsClients, Depends(get_clients)]
TaskControlDep = Annotated[TaskControl, Depends(get_task_control)]


def get_caller(request: Request, stores: StoreDep, settings: SettingsDep) -> Caller:
    caller = identify(request, stores=stores, admin_key=settings.admin_key_value())
    request.state.caller = caller  # for the access log
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]


def get_tenant(caller: CallerDep) -> TenantRecord:
    return require_tenant(caller)


def get_admin(caller: CallerDep) -> Caller:
    require_admin(caller)
    return caller


TenantDep = Annotated[TenantRecord, Depends(get_tenant)]
AdminDep = Annotated[Caller, Depends(get_admin)]


def actor_of(caller: Caller) -> Actor:
    request_id = current_request_id() or "none"
    if caller.tenant is not None:
        return Actor(kind="tenant", id=caller.tenant.tenant_id, request_id=request_id)
    return Actor(kind="admin", id="admin", request_id=request_id)
