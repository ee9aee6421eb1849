"""The codex adapter: its command line, the config.toml it writes, the parsing of its events.

The real CLI runs against a fake Responses API in tests/agents/real/test_codex.py.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from agents.adapters import adapter_for
from agents.adapters.codex import DEFAULT_BASE_URL, REQUEST_MAX_RETRIES, STREAM_MAX_RETRIES

CODEX = adapter_for("codex")


def config_of(tmp_path: Path, env: dict[str, str]) -> tuple[dict, dict[str, str]]:
    home = tmp_path / "home"
    home.mkdir()
    extra = CODEX.prepare(home, env)
    return tomllib.loads((home / ".codex" / "config.toml").read_text()), extra


def test_point_codex_at_outpost_provider_entry(tmp_path: Path) -> None:
    config, extra = config_of(tmp_path, {"OUTPOST_AGENT_BASE_URL": "https://gateway.example/openai/v1"})

    assert extra == {"CODEX_HOME": str(tmp_path / "home" / ".codex")}
    assert config["model_provider"] == "outpost"
    provider = config["model_providers"]["outpost"]
    assert provider["base_url"] == "https://gateway.example/openai/v1"
    assert (provider["env_key"], provider["wire_api"]) == ("OPENAI_API_KEY", "responses")


def test_use_openai_endpoint_without_base_url(tmp_path: Path) -> None:
    config, _ = config_of(tmp_path, {})

    assert config["model_providers"]["outpost"]["base_url"] == DEFAULT_BASE_URL == "https://api.openai.com/v1"


def test_write_valid_toml_whatever_the_base_url_holds(tmp_path: Path) -> None:
    url = 'https://gateway.example/a"b\\c/é/v1'

    config, _ = config_of(tmp_path, {"OUTPOST_AGENT_BASE_URL": url})

    assert config["model_providers"]["outpost"]["base_url"] == url


def test_turn_off_codex_traffic_beyond_the_model_and_bound_retries(tmp_path: Path) -> None:
    config, _ = config_of(tmp_path, {})

    assert config["check_for_update_on_startup"] is False
    assert config["analytics"] == {"enabled": False}
    assert config["features"] == {
        "plugins": False,
        "remote_plugin": False,
        "apps": False,
        "unbounded_connection_retries": False,
    }
    provider = config["model_providers"]["outpost"]
    assert (provider["request_max_retries"], provider["stream_max_retries"]) == (1, 1)
    assert (REQUEST_MAX_RETRIES, STREAM_MAX_RETRIES) == (1, 1)


def test_pass_model_as_flag_only_when_set() -> None:
    with_model = CODEX.command("fix it", scratch=Path("/s"), env={"OUTPOST_AGENT_MODEL": "gpt-5.5"})
    without = CODEX.command("fix it", scratch=Path("/s"), env={})

    assert with_model[with_model.index("--model") + 1] == "gpt-5.5"
    assert "--model" not in without
    assert with_model[-2:] == without[-2:] == ["--", "fix it"]


def test_copy_key_from_either_name() -> None:
    assert CODEX.environment({"CODEX_API_KEY": "k-1"})["OPENAI_API_KEY"] == "k-1"
    assert CODEX.environment({"OPENAI_API_KEY": "k-2"})["CODEX_API_KEY"] == "k-2"


def events(*items: dict) -> str:
    return "\n".join(json.dumps(item) for item in items) + "\n"


def test_count_cache_write_tokens_once_within_input() -> None:
    output = CODEX.parse(
        events(
            {"type": "turn.started"},
            {"type": "item.completed", "item": {"id": "i0", "type": "agent_message", "text": "Done."}},
            {
                "type": "turn.completed",
                "usage": {
                    "input_tokens": 2400,
                    "cached_input_tokens": 2000,
                    "cache_write_input_tokens": 154,
                    "output_tokens": 60,
                    "reasoning_output_tokens": 10,
                },
            },
        )
    )

    assert (output.input_tokens, output.cached_input_tokens, output.output_tokens) == (2400, 2000, 60)
    assert (output.final_message, output.error) == ("Done.", None)


def test_forget_retry_errors_of_a_turn_that_completed() -> None:
    output = CODEX.parse(
        events(
            {"type": "error", "message": "Reconnecting... 1/2 (stream disconnected before completion)"},
            {"type": "item.completed", "item": {"id": "i0", "type": "agent_message", "text": "Done."}},
            {"type": "turn.completed", "usage": {"input_tokens": 10, "output_tokens": 2}},
        )
    )

    assert output.error is None


def test_report_failed_turn_message() -> None:
    output = CODEX.parse(
        events(
            {"type": "error", "message": "Reconnecting... 2/2 (unexpected status 500)"},
            {"type": "turn.failed", "error": {"message": "unexpected status 500 Internal Server Error"}},
        )
    )

    assert output.error == "unexpected status 500 Internal Server Error"


def test_name_missing_result_as_agent_error() -> None:
    output = CODEX.parse("thread 'main' panicked at src/main.rs:1:1\n" + events({"type": "turn.started"}))

    assert output.error == (
        "codex ended without a turn.completed or turn.failed event: thread 'main' panicked at src/main.rs:1:1"
    )
    assert output.input_tokens is None
