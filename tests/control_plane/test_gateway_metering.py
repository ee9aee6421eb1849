"""Usage read from provider answers as their bytes pass (control_plane/gateway/metering.py):
whatever the chunking, and without changing a byte the client is meant to see."""

from __future__ import annotations

import json

import pytest

from control_plane.gateway.metering import (
    AnthropicUsage,
    GeminiUsage,
    Meter,
    OpenAIUsage,
    Tokens,
    usage_only_chunk,
)
from tests.providers import anthropic, gemini, openai_chat, openai_responses
from tests.providers.server import sse_bytes


def _pass(meter: Meter, data: bytes, size: int) -> bytes:
    """``data`` through ``meter`` in chunks of ``size`` bytes; what the client got."""
    out = b"".join(meter.feed(data[i : i + size]) for i in range(0, len(data), size))
    return out + meter.finish()


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
def test_streams_are_metered_whatever_their_chunking_and_pass_unchanged(size: int) -> None:
    usage = anthropic.Usage(
        input_tokens=40, cache_creation_input_tokens=1200, cache_read_input_tokens=300, output_tokens=30
    )
    streams = [
        (
            AnthropicUsage,
            anthropic.FakeAnthropic().text("hello", usage),
            Tokens(1540, 300, 30, cache_write=1200),
        ),
        (
            OpenAIUsage,
            openai_responses.FakeResponses().message(
                "hi", openai_responses.Usage(input_tokens=900, cached_tokens=800, output_tokens=9)
            ),
            Tokens(900, 800, 9),
        ),
        (
            GeminiUsage,
            gemini.FakeGemini().text("hi", gemini.Usage(prompt=90, cached=10, candidates=5, thoughts=3)),
            Tokens(90, 10, 8),
        ),
    ]
    for kind, reply, expected in streams:
        data = b"".join(sse_bytes(reply.events or ()))
        meter = Meter(kind(), event_stream=True)
        assert _pass(meter, data, size) == data
        assert meter.tokens == expected, kind


def test_crlf_events_and_an_unterminated_last_event_are_read() -> None:
    body = {"usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 2}}
    data = b'data: {"candidates": []}\r\n\r\ndata: ' + json.dumps(body).encode()  # no blank line at the end
    meter = Meter(GeminiUsage(), event_stream=True)
    assert _pass(meter, data, 5) == data
    assert meter.tokens == Tokens(7, 0, 2)


def test_a_usage_chunk_the_client_did_not_ask_for_is_dropped_and_nothing_else() -> None:
    reply = openai_chat.FakeChat()._stream(
        "gpt-4o", "hello", openai_chat.Usage(prompt_tokens=12, completion_tokens=3), ()
    )
    events = reply.events or ()
    data = b"".join(sse_bytes(events))
    expected = b"".join(sse_bytes(tuple(e for e in events if not usage_only_chunk(e[1]))))
    for size in (1, 13, len(data)):
        meter = Meter(OpenAIUsage(), event_stream=True, drop=usage_only_chunk)
        assert _pass(meter, data, size) == expected
        assert meter.tokens == Tokens(12, 0, 3)
    assert expected.endswith(b"data: [DONE]\n\n") and len(expected) < len(data)


def test_json_answers_are_read_at_their_end_and_oversized_ones_pass_unread() -> None:
    body = json.dumps(
        {"usage": {"input_tokens": 5, "cache_read_input_tokens": 2, "output_tokens": 1}}
    ).encode()
    meter = Meter(AnthropicUsage(), event_stream=False)
    assert _pass(meter, body, 3) == body and meter.tokens == Tokens(7, 2, 1)
    small = Meter(AnthropicUsage(), event_stream=False, max_bytes=10)
    assert _pass(small, body, 4) == body and small.tokens is None and small.unreadable
    array = json.dumps(
        [{"candidates": []}, {"usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1}}]
    )
    gemini_meter = Meter(GeminiUsage(), event_stream=False)
    assert _pass(gemini_meter, array.encode(), 8) and gemini_meter.tokens == Tokens(3, 0, 1)


def test_a_stream_without_event_boundaries_passes_whole_once_too_large_to_split() -> None:
    data = b"x" * 5000
    meter = Meter(OpenAIUsage(), event_stream=True, drop=usage_only_chunk, max_bytes=1000)
    assert _pass(meter, data, 300) == data and meter.unreadable
