"""A fake OpenAI Chat Completions API (``POST .../chat/completions``), JSON or streamed.

Used for aider (``openai/<model>`` through litellm) and for grok (xAI's API is
OpenAI-compatible). A scripted turn answers text and/or tool calls, in the form the request
asked for: one JSON completion, or with ``"stream": true`` server-sent ``chat.completion.chunk``
events ending in ``[DONE]``, the usage in the last chunk as OpenAI sends it with
``stream_options.include_usage``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.providers.server import FakeProvider, Reply, Request, Step


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0  # cached ones included, as OpenAI counts them
    cached_tokens: int = 0
    completion_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str = "call_01"


class FakeChat(FakeProvider):
    def is_model_call(self, request: Request) -> bool:
        return request.method == "POST" and request.path.split("?")[0].endswith("/chat/completions")

    def route(self, request: Request) -> Reply:
        if request.method == "GET" and request.path.split("?")[0].endswith("/models"):
            return Reply(body={"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
        return super().route(request)

    def error(self, status: int, message: str) -> Reply:
        kind = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status, "server_error")
        return Reply(status=status, body={"error": {"message": message, "type": kind, "code": kind}})

    def turn(self, text: str | None, usage: Usage, tool_calls: tuple[ToolCall, ...] = ()) -> Step:
        """A turn: JSON or a stream, whichever the request asks for."""

        def reply(request: Request) -> Reply:
            body = request.json or {}
            model = body.get("model", "fake-model")
            if body.get("stream"):
                return self._stream(model, text, usage, tool_calls)
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if tool_calls:
                message["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
                    }
                    for c in tool_calls
                ]
            choice = {"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}
            return Reply(
                body={
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": 1_800_000_000,
                    "model": model,
                    "choices": [choice],
                    "usage": usage.to_json(),
                }
            )

        return reply

    def _stream(self, model: str, text: str | None, usage: Usage, tool_calls: tuple[ToolCall, ...]) -> Reply:
        def chunk(
            delta: dict[str, Any], finish: str | None = None, **extra: Any
        ) -> tuple[None, dict[str, Any]]:
            choices = [{"index": 0, "delta": delta, "finish_reason": finish}] if delta or finish else []
            return None, {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1_800_000_000,
                "model": model,
                "choices": choices,
                **extra,
            }

        events = [chunk({"role": "assistant", "content": ""})]
        if text:
            half = len(text) // 2
            events += [chunk({"content": part}) for part in (text[:half], text[half:]) if part]
        for index, call in enumerate(tool_calls):
            encoded = json.dumps(call.arguments)
            start = {
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            events.append(chunk({"tool_calls": [start]}))
            events.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": encoded}}]}))
        events.append(chunk({}, "tool_calls" if tool_calls else "stop"))
        events.append(chunk({}, None, usage=usage.to_json()))
        events.append((None, "[DONE]"))
        return Reply.sse(*events)

    def malformed(self) -> Reply:
        """A stream (or body) cut off mid-object."""
        return Reply(raw=b'data: {"id": "chatcmpl-fake", "choices": [{"delta": {"content": "Hel\n\n')
