"""A fake Gemini API: ``POST /v1beta/models/<model>:streamGenerateContent?alt=sse`` (the chat)
and ``:generateContent`` (side calls), as gemini-cli speaks them.

A chat turn is answered with server-sent events, each a ``GenerateContentResponse``
(``candidates[0].content.parts``: text or a ``functionCall``); the last carries
``finishReason`` and ``usageMetadata``: ``promptTokenCount`` counts every prompt token,
``cachedContentTokenCount`` is part of it, ``candidatesTokenCount`` the answer,
``thoughtsTokenCount`` the thinking (billed as output), ``totalTokenCount`` all of them. A
scripted turn is a call of gemini-cli's own tools (``write_file``, ``replace``) or text. A side
call (the model router's classifier, used only when no model is named) gets an empty JSON
object as text. Errors carry Google's error body; a 429 may carry a ``RetryInfo`` delay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.providers.server import FakeProvider, Reply, Request

STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


@dataclass(frozen=True)
class Usage:
    prompt: int = 0  # every prompt token, the cached ones included
    cached: int = 0
    candidates: int = 0
    thoughts: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "promptTokenCount": self.prompt,
            "cachedContentTokenCount": self.cached,
            "candidatesTokenCount": self.candidates,
            "thoughtsTokenCount": self.thoughts,
            "totalTokenCount": self.prompt + self.candidates + self.thoughts,
        }


class FakeGemini(FakeProvider):
    """``base_url`` is what ``GOOGLE_GEMINI_BASE_URL`` takes: the API root."""

    model_version = "gemini-fake-001"

    @property
    def base_url(self) -> str:
        return self.url

    def is_model_call(self, request: Request) -> bool:
        return request.method == "POST" and ":streamGenerateContent" in request.path

    def route(self, request: Request) -> Reply:
        if request.method == "POST" and request.path.split("?")[0].endswith(":generateContent"):
            return Reply(body=self._response([{"text": "{}"}], Usage(prompt=10, candidates=2)))
        return super().route(request)

    def error(self, status: int, message: str, *, retry_delay_s: int | None = None) -> Reply:
        body: dict[str, Any] = {"code": status, "message": message, "status": STATUSES.get(status, "UNKNOWN")}
        if retry_delay_s is not None:
            body["details"] = [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_delay_s}s"}
            ]
        return Reply(status=status, body={"error": body})

    # -- scripted turns -------------------------------------------------------------------

    def _response(self, parts: list[dict[str, Any]], usage: Usage | None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        response: dict[str, Any] = {"candidates": [candidate], "modelVersion": self.model_version}
        if usage is not None:
            candidate["finishReason"] = "STOP"
            response["usageMetadata"] = usage.to_json()
        return response

    def _stream(self, parts: list[dict[str, Any]], usage: Usage) -> Reply:
        # One event per part, as the API streams them; the last one carries the usage.
        events = [self._response([part], None) for part in parts[:-1]]
        events.append(self._response(parts[-1:], usage))
        return Reply.sse(*((None, event) for event in events))

    def call(self, name: str, arguments: dict[str, Any], usage: Usage) -> Reply:
        """A call of one of gemini-cli's tools (``write_file``, ``replace``, ...)."""
        return self._stream([{"functionCall": {"name": name, "args": arguments}}], usage)

    def text(self, text: str, usage: Usage) -> Reply:
        half = len(text) // 2
        return self._stream([{"text": part} for part in (text[:half], text[half:]) if part], usage)

    def malformed(self) -> Reply:
        """A stream whose event data is cut off mid-object: a proxy that broke the connection."""
        return Reply(raw=b'data: {"candidates": [{"content": {"role"\r\n\r\n')
