"""A fake Anthropic Messages API (``POST /v1/messages``), streaming as server-sent events.

A scripted turn is either text (the model's answer) or a tool call (the CLI's own tool, e.g.
Claude Code's ``Write``/``Edit``), each with the usage numbers the API reports:
``input_tokens`` (uncached), ``cache_creation_input_tokens``, ``cache_read_input_tokens`` in
``message_start`` and ``output_tokens`` in ``message_delta``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.providers.server import FakeProvider, Reply, Request

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    output_tokens: int = 0


class FakeAnthropic(FakeProvider):
    model = "claude-sonnet-4-5"

    def is_model_call(self, request: Request) -> bool:
        path = request.path.split("?")[0]
        return request.method == "POST" and path == "/v1/messages"

    def route(self, request: Request) -> Reply:
        if request.path.split("?")[0] == "/v1/messages/count_tokens":
            return Reply(body={"input_tokens": 100})
        return super().route(request)

    def error(self, status: int, message: str) -> Reply:
        kind = ERROR_TYPES.get(status, "api_error")
        return Reply(status=status, body={"type": "error", "error": {"type": kind, "message": message}})

    # -- scripted turns -------------------------------------------------------------------

    def _stream(
        self, blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]], stop: str, usage: Usage
    ) -> Reply:
        start_usage = {
            "input_tokens": usage.input_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
            "output_tokens": 1,
        }
        events: list[tuple[str | None, Any]] = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_fake",
                        "type": "message",
                        "role": "assistant",
                        "model": self.model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": start_usage,
                    },
                },
            )
        ]
        for index, (block, deltas) in enumerate(blocks):
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": block},
                )
            )
            events.extend(
                ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
                for delta in deltas
            )
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": usage.output_tokens},
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return Reply.sse(*events)

    def text(self, text: str, usage: Usage) -> Reply:
        half = len(text) // 2
        deltas = [{"type": "text_delta", "text": part} for part in (text[:half], text[half:]) if part]
        return self._stream([({"type": "text", "text": ""}, deltas)], "end_turn", usage)

    def tool_use(
        self, name: str, arguments: dict[str, Any], usage: Usage, call_id: str = "toolu_01"
    ) -> Reply:
        encoded = json.dumps(arguments)
        half = len(encoded) // 2
        deltas = [
            {"type": "input_json_delta", "partial_json": part} for part in (encoded[:half], encoded[half:])
        ]
        block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        return self._stream([(block, deltas)], "tool_use", usage)

    def malformed(self) -> Reply:
        """A stream that breaks off mid-event: a proxy that cut the connection."""
        return Reply(raw=b'event: message_start\ndata: {"type": "message_start", "message": {"id"\n\n')
