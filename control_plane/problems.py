"""Errors as RFC 9457 problem details (application/problem+json), naming the offending field.

Every error the API returns goes through here, including FastAPI's validation errors and
unexpected exceptions (a 500 that says nothing about internals; the log has the traceback).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from control_plane.observability import current_request_id

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://outpost.dev/problems/"
log = logging.getLogger("outpost.api")


class Problem(Exception):  # noqa: N818 - named after what it answers with (RFC 9457)
    """Raise to answer with a problem detail."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        type_: str | None = None,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_ or title.lower().replace(" ", "-")
        self.field = field
        self.headers = headers or {}
        self.extensions = extensions


def problem_response(
    request: Request,
    *,
    status: int,
    title: str,
    detail: str,
    type_: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + type_,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": current_request_id(),
    }
    if field is not None:
        body["field"] = field
    body.update(extensions)
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


_PROBLEM_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "field": {"type": "string", "description": "the offending field, when one is at fault"},
    },
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for problem details, for include_router(responses=...)."""
    return {
        status: {
            "description": "problem detail (RFC 9457)",
            "content": {MEDIA_TYPE: {"schema": _PROBLEM_SCHEMA}},
        }
        for status in statuses
    }


def not_found(kind: str, key: str) -> Problem:
    # Identical for a missing record and for another tenant's: nothing tells them apart.
    return Problem(404, "Not Found", f"no {kind} {key}", type_="not-found")


def _field_path(location: tuple[Any, ...]) -> str:
    parts = [str(p) for p in location]
    if parts[:1] == ["body"]:  # FastAPI's prefix for the request body; a field may be named body too
        parts = parts[1:]
    return ".".join(parts) if parts else "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            request,
            status=exc.status,
            title=exc.title,
            detail=exc.detail,
            type_=exc.type,
            field=exc.field,
            headers=exc.headers,
            **exc.extensions,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                # a body that is not JSON at all has no field; the loc is a character offset then
                "field": "body" if e.get("type") == "json_invalid" else _field_path(tuple(e.get("loc", ()))),
                "message": str(e.get("msg", "invalid")),
            }
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        return problem_response(
            request,
            status=422,
            title="Invalid Request",
            detail=f"{first['field']}: {first['message']}",
            type_="invalid-request",
            field=first["field"],
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not Found", 405: "Method Not Allowed"}.get(exc.status_code, "Error")
        return problem_response(
            request,
            status=exc.status_code,
            title=title,
            detail=str(exc.detail),
            type_=title.lower().replace(" ", "-"),
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return problem_response(
            request,
            status=500,
            title="Internal Error",
            detail="the control plane failed to handle this request; quote the request id",
            type_="internal-error",
        )
