"""The gemini adapter: its command line, the settings file it writes, the parsing of its events.

The real CLI runs against a fake Gemini API in tests/agents/real/test_gemini.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from agents.adapters import adapter_for
from agents.adapters.gemini import MAX_ATTEMPTS

GEMINI = adapter_for("gemini")


def test_trust_workspace_and_approve_every_tool_call_headless() -> None:
    command = GEMINI.command("fix it", scratch=Path("/s"), env={})

    assert command[command.index("--approval-mode") + 1] == "yolo"
    assert "--skip-trust" in command
    assert "--prompt=fix it" in command


def test_pass_model_as_flag_only_when_set() -> None:
    with_model = GEMINI.command("fix it", scratch=Path("/s"), env={"OUTPOST_AGENT_MODEL": "gemini-2.5-pro"})

    assert with_model[with_model.index("--model") + 1] == "gemini-2.5-pro"
    assert "--model" not in GEMINI.command("fix it", scratch=Path("/s"), env={})


def test_select_api_key_auth_and_turn_off_background_traffic(tmp_path: Path) -> None:
    extra = GEMINI.prepare(tmp_path, {"OUTPOST_AGENT_BASE_URL": "https://gateway.example/google"})

    settings = json.loads((tmp_path / ".gemini" / "settings.json").read_text())
    assert settings["security"]["auth"]["selectedType"] == "gemini-api-key"
    assert settings["general"] == {
        "enableAutoUpdate": False,
        "enableAutoUpdateNotification": False,
        "maxAttempts": 2,
    }
    assert MAX_ATTEMPTS == 2
    assert settings["privacy"] == {"usageStatisticsEnabled": False}
    assert settings["telemetry"] == {"enabled": False}
    assert extra == {"GOOGLE_GEMINI_BASE_URL": "https://gateway.example/google"}


def test_keep_default_endpoint_without_base_url(tmp_path: Path) -> None:
    assert GEMINI.prepare(tmp_path, {}) == {}
    assert (tmp_path / ".gemini" / "settings.json").is_file()


def test_skip_relaunch_and_telemetry_unless_set() -> None:
    env = GEMINI.environment({})

    assert (env["GEMINI_CLI_NO_RELAUNCH"], env["GEMINI_TELEMETRY_ENABLED"]) == ("true", "false")
    assert GEMINI.environment({"GEMINI_TELEMETRY_ENABLED": "true"})["GEMINI_TELEMETRY_ENABLED"] == "true"


def events(*items: dict) -> str:
    return "\n".join(json.dumps(item) for item in items) + "\n"


def result(status: str = "success", **fields: object) -> dict:
    stats = {"total_tokens": 1848, "input_tokens": 1800, "output_tokens": 40, "cached": 1200, "input": 600}
    return {"type": "result", "status": status, "stats": stats, **fields}


def test_count_thinking_tokens_as_output() -> None:
    output = GEMINI.parse(
        events(
            {"type": "message", "role": "assistant", "content": "Created ", "delta": True},
            {"type": "message", "role": "assistant", "content": "hello.txt.", "delta": True},
            result(),
        )
    )

    # total 1848 = input 1800 + candidates 40 + thinking 8.
    assert (output.input_tokens, output.cached_input_tokens, output.output_tokens) == (1800, 1200, 48)
    assert (output.final_message, output.error) == ("Created hello.txt.", None)


def test_name_api_error_by_code_status_and_message() -> None:
    body = {"error": {"code": 401, "message": "API key not valid.", "status": "UNAUTHENTICATED"}}
    output = GEMINI.parse(
        events(result("error", error={"type": "unknown", "message": f"[API Error: {json.dumps(body)}]"}))
    )

    assert output.error == "API error 401 UNAUTHENTICATED: API key not valid."


def test_keep_error_message_that_is_not_an_api_body() -> None:
    message = "[API Error: Resource has been exhausted (e.g. check quota).]\nPlease wait and try again later."
    output = GEMINI.parse(events(result("error", error={"type": "unknown", "message": message})))

    assert output.error == message


def test_name_missing_result_by_what_gemini_said_last() -> None:
    untrusted = (
        "\x1b[31mGemini CLI is not running in a trusted directory. To proceed, either use `--skip-trust`, "
        "set the `GEMINI_CLI_TRUST_WORKSPACE=true` environment variable, or trust this directory in "
        "interactive mode.\x1b[0m"
    )
    output = GEMINI.parse(events({"type": "init", "model": "auto"}) + untrusted + "\n")

    assert output.error == "gemini ended without a result event: " + untrusted[5:-4]
    assert GEMINI.parse("").error == "gemini ended without a result event"


def test_forget_error_events_of_a_run_that_succeeded() -> None:
    output = GEMINI.parse(
        events(
            {"type": "error", "severity": "error", "message": "Tool call failed: replace (no match)"},
            {"type": "message", "role": "assistant", "content": "Done.", "delta": True},
            result(),
        )
    )

    assert (output.error, output.final_message) == (None, "Done.")
