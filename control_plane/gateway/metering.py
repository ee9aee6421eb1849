"""A model call's token usage, read from the provider's answer as its bytes pass through.

Every provider reports usage in its answer, streamed or not, each in its own words:

- Anthropic Messages: ``usage`` of the message (``message_start`` when streamed, then
  cumulative figures in ``message_delta``): ``input_tokens`` (not cached),
  ``cache_creation_input_tokens``, ``cache_read_input_tokens``, ``output_tokens``;
- OpenAI Chat Completions (and xAI): ``usage`` of the completion, or of the last chunk of a
  stream asked with ``stream_options.include_usage``: ``prompt_tokens`` (cached included),
  ``prompt_tokens_details.cached_tokens``, ``completion_tokens``;
- OpenAI Responses (and xAI): ``usage`` of the response (``response.completed``, or
  ``response.incomplete``/``response.failed``, when streamed): ``input_tokens`` (cached
  included), ``input_tokens_details.cached_tokens``, ``output_tokens`` (reasoning included);
- Gemini: ``usageMetadata`` of the answer or of the last streamed chunk:
  ``promptTokenCount`` (cached included) + ``toolUsePromptTokenCount``,
  ``cachedContentTokenCount``, ``candidatesTokenCount`` + ``thoughtsTokenCount``.

:class:`Tokens` holds them in Outpost's terms (docs/usage.md): ``input`` counts every prompt
token, cached ones included; ``cached`` is the part served from the prompt cache; ``output``
every generated token, thinking included. A stream is split into its server-sent events
(LF or CRLF line ends) without holding more than one event back, and only events that mention
usage are decoded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_EVENT_BYTES = 16 * 1024 * 1024  # one event, or a whole JSON answer, read for its usage


@dataclass(frozen=True)
class Tokens:
    input: int = 0  # every prompt token, cached ones and cache writes included
    cached: int = 0
    output: int = 0  # thinking included
    cache_write: int = 0  # prompt tokens written to the cache (priced apart where they cost more)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class Usage:
    """What a provider's answer said about usage so far; ``observe`` each decoded JSON object."""

    def __init__(self) -> None:
        self.tokens: Tokens | None = None

    def observe(self, obj: Any) -> None:
        raise NotImplementedError


class AnthropicUsage(Usage):
    FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[str, int] = {}

    def observe(self, obj: Any) -> None:
        obj = _dict(obj)
        usage = _dict(_dict(obj.get("message")).get("usage")) if obj.get("type") == "message_start" else {}
        usage = usage or _dict(obj.get("usage"))
        # message_delta's figures are cumulative: a later figure replaces an earlier one
        self._seen.update({k: _int(usage[k]) for k in self.FIELDS if usage.get(k) is not None})
        if self._seen:
            seen = self._seen
            self.tokens = Tokens(
                input=sum(seen.get(k, 0) for k in self.FIELDS[:3]),
                cached=seen.get("cache_read_input_tokens", 0),
                output=seen.get("output_tokens", 0),
                cache_write=seen.get("cache_creation_input_tokens", 0),
            )


class OpenAIUsage(Usage):
    """Chat Completions and Responses (OpenAI's and xAI's)."""

    def observe(self, obj: Any) -> None:
        obj = _dict(obj)
        usage = _dict(_dict(obj.get("response")).get("usage")) or _dict(obj.get("usage"))
        if "prompt_tokens" in usage:
            self.tokens = Tokens(
                input=_int(usage["prompt_tokens"]),
                cached=_int(_dict(usage.get("prompt_tokens_details")).get("cached_tokens")),
                output=_int(usage.get("completion_tokens")),
            )
        elif "input_tokens" in usage:
            details = _dict(usage.get("input_tokens_details"))
            self.tokens = Tokens(
                input=_int(usage["input_tokens"]),
                cached=_int(details.get("cached_tokens")),
                output=_int(usage.get("output_tokens")),
                cache_write=_int(details.get("cache_write_tokens")),
            )


class GeminiUsage(Usage):
    def observe(self, obj: Any) -> None:
        if isinstance(obj, list):  # streamGenerateContent without alt=sse: one JSON array
            for item in obj:
                self.observe(item)
            return
        usage = _dict(_dict(obj).get("usageMetadata"))
        if usage:
            self.tokens = Tokens(
                input=_int(usage.get("promptTokenCount")) + _int(usage.get("toolUsePromptTokenCount")),
                cached=_int(usage.get("cachedContentTokenCount")),
                output=_int(usage.get("candidatesTokenCount")) + _int(usage.get("thoughtsTokenCount")),
            )


class EventSplitter:
    """A server-sent event stream cut into whole events as its bytes arrive: each event's raw
    bytes (its blank line included) and its ``data`` lines joined."""

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer already split into lines
        self._data: list[bytes] = []
        self._max = max_event_bytes
        self.overflowed = False

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        if self.overflowed:
            return []
        self._buffer += chunk
        events: list[tuple[bytes, bytes]] = []
        start, position = 0, self._scanned
        while (end := self._buffer.find(b"\n", position)) >= 0:
            line = bytes(self._buffer[position:end]).rstrip(b"\r")
            position = end + 1
            if not line:
                events.append((bytes(self._buffer[start:position]), b"\n".join(self._data)))
                self._data, start = [], position
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
        del self._buffer[:start]
        self._scanned = position - start
        self.overflowed = len(self._buffer) > self._max  # no event is this large: stop splitting
        return events

    def take_rest(self) -> bytes:
        """The bytes after the last whole event (handed over: the splitter forgets them)."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._scanned = 0
        return rest


class Meter:
    """Reads usage from an answer passing through; ``feed`` returns the bytes to pass on.

    ``drop`` (streams only) names events that the client did not ask for and must not see:
    the gateway's own ``include_usage`` chunk of a Chat Completions stream. With it, the
    stream is passed on event by event; without it, chunk by chunk as it arrives.
    """

    def __init__(
        self,
        usage: Usage,
        *,
        event_stream: bool,
        drop: Callable[[Any], bool] | None = None,
        max_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        self.usage = usage
        self.event_stream = event_stream
        self._drop = drop if event_stream else None
        self._events = EventSplitter(max_bytes)
        self._body = bytearray()
        self._max = max_bytes
        self.unreadable = False  # the answer was too large or not what its type said
        self._finished = False

    @property
    def tokens(self) -> Tokens | None:
        return self.usage.tokens

    def feed(self, chunk: bytes) -> bytes:
        if not self.event_stream:
            if len(self._body) + len(chunk) <= self._max:
                self._body += chunk
            else:
                self.unreadable = True
            return chunk
        if self.unreadable:
            return chunk
        kept: list[bytes] = []
        for raw, data in self._events.feed(chunk):
            obj = self._decode(data) if b"sage" in data else None  # "usage", "usageMetadata"
            if obj is not None:
                self.usage.observe(obj)
                if self._drop is not None and self._drop(obj):
                    continue
            kept.append(raw)
        if self._events.overflowed:  # not an event stream after all: pass the rest as it comes
            self.unreadable = True
            held = self._events.take_rest()
            return b"".join(kept) + held if self._drop is not None else chunk
        return b"".join(kept) if self._drop is not None else chunk

    def finish(self) -> bytes:
        """The bytes still held back (an unterminated last event); reads a JSON answer."""
        if self._finished:
            return b""
        self._finished = True
        if not self.event_stream:
            if not self.unreadable and self._body:
                obj = self._decode(bytes(self._body))
                if obj is None:
                    self.unreadable = True
                else:
                    self.usage.observe(obj)
            return b""
        rest = self._events.take_rest()
        if self.unreadable:
            return b""
        for _, data in EventSplitter(self._max).feed(rest + b"\n\n"):  # a last event left open
            obj = self._decode(data) if b"sage" in data else None
            if obj is not None:
                self.usage.observe(obj)
        return rest if self._drop is not None else b""

    @staticmethod
    def _decode(data: bytes) -> Any:
        try:
            return json.loads(data)
        except ValueError:
            return None


def usage_only_chunk(obj: Any) -> bool:
    """A Chat Completions stream's usage chunk: no choices, only the usage."""
    return isinstance(obj, dict) and obj.get("choices") == [] and isinstance(obj.get("usage"), dict)
