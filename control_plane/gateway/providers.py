"""What differs between the providers' APIs, as far as the gateway is concerned.

For each provider route: its real API root, the paths an agent may call (the model calls, token
counts and model listings its CLI makes; never files, batches, fine-tuning or anything else
that would spend the provider account outside the gateway's metering), where the model of a
call is named, where a client puts its key (the agent's gateway token arrives there), how the
gateway sends the real key, how the provider shapes an error, and how it reports usage.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from control_plane.gateway.metering import AnthropicUsage, GeminiUsage, OpenAIUsage, Usage

# Safe characters of a path the gateway forwards: no "%" (nothing decoded twice), no "..".
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._:@/-]*$")
_GEMINI_MODEL = re.compile(r"^/v1(?:beta|alpha)?/models/([^/:]+):[A-Za-z]+$")


@dataclass(frozen=True)
class Refusal:
    """An answer in the provider's own error shape."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


# What the gateway refuses, by reason: (HTTP status, Anthropic type, OpenAI type, OpenAI code,
# Google status). A spent budget answers as each provider answers an exhausted quota: 429
# without retry-after (Anthropic's spend cap: rate_limit_error; OpenAI's: insufficient_quota,
# which codex does not retry; Google's: RESOURCE_EXHAUSTED).
REASONS: Mapping[str, tuple[int, str, str, str, str]] = MappingProxyType(
    {
        "bad-request": (400, "invalid_request_error", "invalid_request_error", "invalid_request", "INVALID_ARGUMENT"),
        "unauthorized": (401, "authentication_error", "invalid_request_error", "invalid_api_key", "UNAUTHENTICATED"),
        "forbidden": (403, "permission_error", "invalid_request_error", "permission_denied", "PERMISSION_DENIED"),
        "model-not-allowed": (403, "permission_error", "invalid_request_error", "model_not_allowed", "PERMISSION_DENIED"),
        "not-found": (404, "not_found_error", "invalid_request_error", "unknown_url", "NOT_FOUND"),
        "too-large": (413, "request_too_large", "invalid_request_error", "request_too_large", "INVALID_ARGUMENT"),
        "budget": (429, "rate_limit_error", "insufficient_quota", "insufficient_quota", "RESOURCE_EXHAUSTED"),
        "concurrency": (429, "rate_limit_error", "requests", "rate_limit_exceeded", "RESOURCE_EXHAUSTED"),
        "upstream": (502, "api_error", "server_error", "bad_gateway", "UNAVAILABLE"),
        "no-key": (503, "api_error", "server_error", "no_provider_key", "UNAVAILABLE"),
    }
)  # fmt: skip


@dataclass(frozen=True)
class Provider:
    route: str  # the gateway's path segment: /gateway/<route>/...
    root: str  # the real API root (no trailing slash)
    paths: tuple[tuple[str, re.Pattern[str]], ...]  # (method, path) an agent may call
    usage: Callable[[], Usage]
    error_style: str  # "anthropic", "openai" or "google"
    key_header: str  # how the gateway sends the real key

    def allows(self, method: str, path: str) -> bool:
        if not _SAFE_PATH.match(path) or "/../" in f"{path}/" or "//" in path:
            return False
        return any(method == m and pattern.fullmatch(path) for m, pattern in self.paths)

    def key_headers(self, key: str) -> dict[str, str]:
        return {self.key_header: f"Bearer {key}" if self.key_header == "authorization" else key}

    def model_of(self, path: str, body: Any) -> str | None:
        if self.error_style == "google":
            match = _GEMINI_MODEL.match(path)
            return match.group(1) if match else None
        model = body.get("model") if isinstance(body, dict) else None
        return model if isinstance(model, str) and model else None

    def refusal(self, reason: str, message: str, *, retry_after_s: int | None = None) -> Refusal:
        status, anthropic, openai_type, openai_code, google = REASONS[reason]
        message = f"Outpost gateway: {message}"
        body: dict[str, Any]
        if self.error_style == "anthropic":
            body = {"type": "error", "error": {"type": anthropic, "message": message}}
        elif self.error_style == "openai":
            body = {"error": {"message": message, "type": openai_type, "param": None, "code": openai_code}}
        else:
            body = {"error": {"code": status, "message": message, "status": google}}
        headers = {"retry-after": str(retry_after_s)} if retry_after_s is not None else {}
        return Refusal(status, body, headers)


def client_credential(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The key the client sent, wherever its SDK puts one: ``x-api-key`` (Anthropic),
    ``Authorization: Bearer`` (OpenAI, xAI, Anthropic's auth token), ``x-goog-api-key`` or
    ``?key=`` (Gemini). For an agent this is its gateway token."""
    for name in ("x-api-key", "x-goog-api-key"):
        if headers.get(name, "").strip():
            return headers[name].strip()
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return query.get("key", "").strip() or None


# Headers that name the client's credential: never forwarded (the gateway sends the real key).
CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key", "x-goog-api-key", "proxy-authorization"})


def _paths(*entries: tuple[str, str]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple((method, re.compile(pattern)) for method, pattern in entries)


_OPENAI_PATHS = _paths(
    ("POST", r"/v1/chat/completions"),
    ("POST", r"/v1/responses"),
    ("POST", r"/v1/responses/(?:compact|input_tokens)"),
    ("GET", r"/v1/models(?:/[^/]+)?"),
)

PROVIDERS: Mapping[str, Provider] = MappingProxyType(
    {
        "anthropic": Provider(
            route="anthropic",
            root="https://api.anthropic.com",
            paths=_paths(
                ("POST", r"/v1/messages"),
                ("POST", r"/v1/messages/count_tokens"),
                ("GET", r"/v1/models(?:/[^/]+)?"),
            ),
            usage=AnthropicUsage,
            error_style="anthropic",
            key_header="x-api-key",
        ),
        "openai": Provider(
            route="openai",
            root="https://api.openai.com",
            paths=_OPENAI_PATHS,
            usage=OpenAIUsage,
            error_style="openai",
            key_header="authorization",
        ),
        "gemini": Provider(
            route="gemini",
            root="https://generativelanguage.googleapis.com",
            paths=_paths(
                (
                    "POST",
                    r"/v1(?:beta|alpha)?/models/[^/:]+:(?:generateContent|streamGenerateContent|countTokens)",
                ),
                ("GET", r"/v1(?:beta|alpha)?/models(?:/[^/:]+)?"),
            ),
            usage=GeminiUsage,
            error_style="google",
            key_header="x-goog-api-key",
        ),
        "xai": Provider(
            route="xai",
            root="https://api.x.ai",
            paths=_OPENAI_PATHS,
            usage=OpenAIUsage,
            error_style="openai",
            key_header="authorization",
        ),
    }
)


def parse_json(body: bytes) -> Any:
    """The request's JSON body; None when it has none or it is not JSON."""
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None
