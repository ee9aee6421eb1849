"""The control-plane application with the dispatch engine attached.

    uvicorn --factory control_plane.engine.app:create_engine_app

builds the API (control_plane.main.create_app), attaches the engine's TaskControl, mounts the
internal endpoints and runs the engine's loops for the application's lifetime.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from control_plane.api.routes import internal
from control_plane.aws import make_clients
from control_plane.engine.config import EngineSettings
from control_plane.engine.service import Engine
from control_plane.main import create_app
from control_plane.runtime.base import Runtime
from control_plane.settings import Settings

GIL_SWITCH_INTERVAL_S = 0.001


def create_engine_app(
    settings: Settings | None = None,
    *,
    engine_settings: EngineSettings | None = None,
    runtime: Runtime | None = None,
    stop_tasks_on_shutdown: bool = True,
) -> FastAPI:
    settings = settings or Settings()
    clients = make_clients(settings)
    app = create_app(settings, clients=clients)
    engine = Engine(
        settings=settings,
        clients=clients,
        stores=app.state.stores,
        engine_settings=engine_settings,
        runtime=runtime,
    )
    app.state.engine = engine
    app.state.task_control = engine.task_control
    if not any(getattr(route, "path", "") == "/internal/claim" for route in app.routes):
        app.include_router(internal.router)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[object]:
        # Every idle runner holds one worker thread for its long-polling claim: make room for
        # them beside the API's own requests (anyio's default is 40 threads).
        anyio.to_thread.current_default_thread_limiter().total_tokens = engine.config.api_threads
        # The event loop streams the model gateway's answers while worker threads run boto3
        # calls (the engine's passes, the gateway's checks and accounting): with Python's
        # default 5 ms GIL switch interval, each chunk the loop relays may wait that long for a
        # busy thread. 1 ms keeps the relay prompt (bench_gateway: ~3 ms less per call at p50).
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        async with inner(application) as state:
            engine.start()
            try:
                yield state
            finally:
                gateway = getattr(application.state, "gateway", None)
                if gateway is not None:  # its pooled connections; the calls' accounting finishes
                    await gateway.aclose()
                engine.stop(stop_tasks=stop_tasks_on_shutdown)
                application.state.stores.stats.flush()  # the last second's fleet counts

    app.router.lifespan_context = lifespan  # type: ignore[assignment]  # same protocol, wider state type
    return app
