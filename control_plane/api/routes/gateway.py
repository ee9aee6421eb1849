"""``/gateway/{provider}/...``: the model gateway's route (control_plane/gateway,
docs/model-gateway.md).

Agent tasks call it instead of their provider, with their dispatch's gateway token as the API
key. Like ``/internal/*`` it is for the agent tasks only: in AWS they reach the service
directly inside the VPC, and the public load balancer refuses the path. It needs the dispatch
engine (the claims that mint and check gateway tokens, the budgets): 503 where none runs.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import State

from control_plane.gateway.keys import EnvironmentKeys, ProviderKeys, SecretKeyValues
from control_plane.gateway.service import Gateway
from control_plane.runtime.provider_keys import secrets_client
from control_plane.settings import Settings

router = APIRouter(prefix="/gateway", tags=["gateway"], include_in_schema=False)


@router.api_route("/{provider}/{path:path}", methods=["GET", "POST"])
async def forward(provider: str, path: str, request: Request) -> Response:
    """One model call, passed to the provider with the real key and streamed back."""
    gateway = gateway_of(request.app.state)
    if gateway is None:
        return JSONResponse({"error": {"message": "the model gateway is not running here"}}, 503)
    return await gateway.handle(request, provider)


def gateway_of(state: State) -> Gateway | None:
    """The application's gateway (``app.state``), built at its first use from the engine it
    runs with; None without an engine."""
    gateway: Gateway | None = getattr(state, "gateway", None)
    if gateway is None:
        engine = getattr(state, "engine", None)
        if engine is None:
            return None
        gateway = Gateway(
            settings=engine.settings,
            stores=engine.stores,
            tokens=engine.claims,
            keys=provider_keys(engine.settings),
            budgets=getattr(engine, "budgets", None),
        )
        state.gateway = gateway
    return gateway


def provider_keys(settings: Settings) -> ProviderKeys:
    """Secrets Manager on ECS; in local mode, the control plane's own environment."""
    if settings.runtime == "ecs":
        client = secrets_client(settings.region, settings.aws_endpoint_url)
        return SecretKeyValues(client=client, secrets=settings.agent_secrets)
    return EnvironmentKeys()
