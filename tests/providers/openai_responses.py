"""A fake OpenAI Responses API (``POST /v1/responses``), streaming as server-sent events.

What codex speaks: one request per model turn, answered with ``response.created``, one
``response.output_item.done`` per output item and ``response.completed`` carrying the usage:
``input_tokens`` counts every prompt token, ``input_tokens_details.cached_tokens`` and
``cache_write_tokens`` are parts of it; ``output_tokens`` includes
``output_tokens_details.reasoning_tokens``. A scripted turn is an ``apply_patch`` edit (codex's
freeform patch tool), a shell command (``exec_command``) or the final message, each with its
usage; errors carry OpenAI's error body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.providers.server import FakeProvider, Reply, Request

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    429: "rate_limit_exceeded",
}
ERROR_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0  # every prompt token, the cached and cache-written ones included
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0  # reasoning included
    reasoning_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {
                "cached_tokens": self.cached_tokens,
                "cache_write_tokens": self.cache_write_tokens,
            },
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.input_tokens + self.output_tokens,
        }


class FakeResponses(FakeProvider):
    """``base_url`` is what codex's provider entry takes: the API root up to ``/v1``."""

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def is_model_call(self, request: Request) -> bool:
        return request.method == "POST" and request.path.split("?")[0] == "/v1/responses"

    def error(self, status: int, message: str) -> Reply:
        kind = ERROR_TYPES.get(status, "server_error")
        return Reply(
            status=status,
            body={
                "error": {"message": message, "type": kind, "param": None, "code": ERROR_CODES.get(status)}
            },
        )

    # -- scripted turns -------------------------------------------------------------------

    def _stream(self, items: list[dict[str, Any]], usage: Usage) -> Reply:
        response = {"id": "resp_fake", "object": "response", "status": "in_progress", "output": []}
        events: list[tuple[str | None, Any]] = [
            ("response.created", {"type": "response.created", "response": response})
        ]
        events += [
            (
                "response.output_item.done",
                {"type": "response.output_item.done", "output_index": i, "item": item},
            )
            for i, item in enumerate(items)
        ]
        done = {**response, "status": "completed", "output": items, "usage": usage.to_json()}
        events.append(("response.completed", {"type": "response.completed", "response": done}))
        return Reply.sse(*events)

    def apply_patch(self, patch: str, usage: Usage, call_id: str = "call_patch") -> Reply:
        """An edit with codex's freeform ``apply_patch`` tool (``*** Begin Patch`` text)."""
        item = {
            "type": "custom_tool_call",
            "id": f"ctc_{call_id}",
            "call_id": call_id,
            "name": "apply_patch",
            "input": patch,
            "status": "completed",
        }
        return self._stream([item], usage)

    def shell(self, command: str, usage: Usage, call_id: str = "call_shell") -> Reply:
        """A command through codex's ``exec_command`` tool."""
        item = {
            "type": "function_call",
            "id": f"fc_{call_id}",
            "call_id": call_id,
            "name": "exec_command",
            "arguments": json.dumps({"cmd": command}),
            "status": "completed",
        }
        return self._stream([item], usage)

    def message(self, text: str, usage: Usage) -> Reply:
        item = {
            "type": "message",
            "id": "msg_final",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        return self._stream([item], usage)

    def malformed(self) -> Reply:
        """A stream whose event data is cut off mid-object: a proxy that broke the connection."""
        return Reply(raw=b'event: response.created\ndata: {"type": "response.created", "response": {"id"\n\n')
