"""The control-plane application: `create_app(settings)` builds it.

uvicorn runs it with `uvicorn --factory control_plane.main:app_from_env`. The dispatch engine
builds on the same factory: it passes its TaskControl and adds its internal routers, e.g.

    app = create_app(settings, task_control=engine.task_control)
    app.include_router(internal_router)

The stores live on `app.state.stores`, the boto3 clients on `app.state.clients`.
"""

from __future__ import annotations

from fastapi import FastAPI

from control_plane import problems
from control_plane.api.middleware import BodyLimit, RequestContext
from control_plane.api.routes import dispatches, gateway, health, internal, tenants, usage
from control_plane.aws import AwsClients, make_clients
from control_plane.hooks import NoTaskControl, TaskControl
from control_plane.observability import configure_logging
from control_plane.settings import Settings
from control_plane.store import Stores


def create_app(
    settings: Settings | None = None,
    *,
    task_control: TaskControl | None = None,
    clients: AwsClients | None = None,
) -> FastAPI:
    settings = settings or Settings()
    clients = clients or make_clients(settings)
    app = FastAPI(
        title="Outpost control plane",
        version="1",
        summary="Dispatch AI coding agents to one-job sandboxes on ECS Fargate.",
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.clients = clients
    app.state.stores = Stores.from_settings(settings, clients)
    app.state.task_control = task_control or NoTaskControl()
    problems.install(app)
    # 400: a body that is not JSON, an unknown agent filter, a cursor this service did not issue
    app.include_router(
        dispatches.router,
        responses=problems.documented(400, 401, 403, 404, 409, 413, 422, 429, 503),
    )
    app.include_router(tenants.router, responses=problems.documented(400, 401, 403, 404, 409, 413, 422))
    app.include_router(health.router, responses=problems.documented(401, 403))
    app.include_router(usage.router, responses=problems.documented(401, 403, 422))
    app.include_router(internal.router)  # the runners' claim protocol; 503 until an engine is attached
    app.include_router(gateway.router)  # the agents' model calls; 503 until an engine is attached
    # Outermost first: the request id exists before the body limit can refuse anything.
    app.add_middleware(
        BodyLimit,
        max_body_bytes=settings.max_body_bytes,
        limits_by_prefix={"/gateway/": settings.gateway_max_body_bytes},
    )
    app.add_middleware(RequestContext)
    return app


def app_from_env() -> FastAPI:
    """The service as deployed: the API with the dispatch engine (control_plane.engine.app)."""
    from control_plane.engine.app import create_engine_app

    configure_logging()
    return create_engine_app(Settings())
