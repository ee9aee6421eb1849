"""The adapters: command lines per agent, and parsing of each CLI's documented output."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.adapters import ADAPTERS, AgentOutput, adapter_for
from agents.registry import AGENTS

FIXTURES = Path(__file__).parent / "fixtures"


def parse(agent: str, fixture: str) -> AgentOutput:
    return adapter_for(agent).parse((FIXTURES / fixture).read_text())


def test_cover_every_registry_agent() -> None:
    assert set(ADAPTERS) == set(AGENTS)


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_build_command_with_task_as_one_argument(agent: str) -> None:
    task = "--help; rm -rf / # a task that looks like flags"
    command = adapter_for(agent).command(task, scratch=Path("/scratch"), env={})

    assert command[: len(AGENTS[agent].command)] == list(AGENTS[agent].command)
    carriers = [arg for arg in command if task in arg]
    assert len(carriers) == 1
    # Either a flag's own value (--prompt=<task>) or a positional after "--".
    carrier = carriers[0]
    assert carrier.endswith("=" + task) or command[command.index(carrier) - 1] == "--"


def test_build_aider_command_keeps_history_out_of_repo() -> None:
    command = adapter_for("aider").command("fix it", scratch=Path("/scratch"), env={})

    assert command[command.index("--chat-history-file") + 1] == "/scratch/aider.chat.history.md"
    assert command[command.index("--input-history-file") + 1] == "/scratch/aider.input.history"
    assert {"--yes-always", "--no-pretty", "--no-gitignore", "--no-auto-commits"} <= set(command)


@pytest.mark.parametrize(
    ("agent", "variable", "given"),
    [
        ("codex", "CODEX_API_KEY", "OPENAI_API_KEY"),
        ("gemini", "GEMINI_API_KEY", "GOOGLE_API_KEY"),
        ("grok", "GROK_API_KEY", "XAI_API_KEY"),
    ],
)
def test_copy_provider_key_to_name_cli_reads(agent: str, variable: str, given: str) -> None:
    env = adapter_for(agent).environment({given: "key-value", "PATH": "/usr/bin"})

    assert env[variable] == "key-value"
    assert adapter_for(agent).environment({given: "a", variable: "b"})[variable] == "b"


def test_turn_off_claude_background_traffic_unless_set() -> None:
    claude = adapter_for("claude")

    assert claude.environment({})["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert (
        claude.environment({"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "0"})[
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"
        ]
        == "0"
    )


def test_parse_claude_stream_json() -> None:
    output = parse("claude", "claude_stream.jsonl")

    assert output.final_message == (
        'Added a `name` parameter to `greet()` with a default of "world"; it now returns "hello, <name>".'
    )
    assert (output.input_tokens, output.output_tokens, output.cached_input_tokens) == (22195, 418, 15872)
    assert output.cost_usd == 0.0421635
    assert output.error is None


def test_parse_claude_error_result() -> None:
    output = parse("claude", "claude_error.json")

    assert output.error == "Invalid API key · Fix external API key"
    assert output.cost_usd == 0.0


def test_parse_codex_events() -> None:
    output = parse("codex", "codex.jsonl")

    assert (
        output.final_message
        == 'Updated `greet()` to take a `name` argument (default `"world"`) and return `hello, {name}`.'
    )
    assert (output.input_tokens, output.output_tokens, output.cached_input_tokens) == (24763, 122, 24448)
    assert output.cost_usd is None and output.error is None


def test_parse_codex_failed_turn() -> None:
    output = parse("codex", "codex_failed.jsonl")

    assert output.error == "unexpected status 401 Unauthorized: Incorrect API key provided"
    assert output.final_message is None and output.input_tokens is None


def test_parse_gemini_stream_json() -> None:
    output = parse("gemini", "gemini_stream.jsonl")

    assert output.final_message == "`greet()` now takes a `name` argument and returns `hello, {name}`."
    assert (output.input_tokens, output.output_tokens, output.cached_input_tokens) == (21512, 381, 14336)
    assert output.error is None


def test_parse_gemini_single_json_summing_models() -> None:
    output = parse("gemini", "gemini.json")

    assert output.final_message == "`greet()` now takes a `name` argument and returns `hello, {name}`."
    # Output: candidates 931 plus thinking 241, billed as output.
    assert (output.input_tokens, output.output_tokens, output.cached_input_tokens) == (45204, 1172, 10656)


def test_parse_aider_usage_report() -> None:
    output = parse("aider", "aider.txt")

    assert (
        output.final_message == "I'll add a `name` parameter to `greet()` and use it in the returned string."
    )
    assert (output.input_tokens, output.output_tokens, output.cached_input_tokens) == (3800, 142, 1200)
    assert output.cost_usd == 0.0064


def test_parse_aider_sums_messages_and_keeps_session_cost() -> None:
    output = adapter_for("aider").parse(
        "first answer\n"
        "Tokens: 2.6k sent, 142 received. Cost: $0.0064 message, $0.0064 session.\n"
        "second answer\n"
        "Tokens: 12k sent, 96 received. Cost: $0.03 message, $0.0364 session.\n"
    )

    assert output.final_message == "second answer"
    assert (output.input_tokens, output.output_tokens) == (14600, 238)
    assert output.cost_usd == 0.0364


def test_parse_grok_messages() -> None:
    output = parse("grok", "grok.jsonl")

    assert (
        output.final_message
        == 'Done: `greet()` now takes a `name` argument (default "world") and returns `hello, {name}`.'
    )
    assert output.input_tokens is None and output.error is None


def test_parse_grok_error() -> None:
    output = parse("grok", "grok_error.jsonl")

    assert output.error is not None and output.error.startswith("Error: 401 Incorrect API key")


def test_parse_shell_last_line() -> None:
    assert adapter_for("shell").parse("building\n\x1b[32mall 12 tests passed\x1b[0m\n\n").final_message == (
        "all 12 tests passed"
    )


@pytest.mark.parametrize("agent", sorted(AGENTS))
@pytest.mark.parametrize(
    "output",
    [
        "",
        "Segmentation fault (core dumped)\n",
        '{"type": "result", "usage": "none", "result": 3}\n',
        "[1, 2]\n{not json",
    ],
)
def test_parse_unexpected_output_without_raising(agent: str, output: str) -> None:
    assert isinstance(adapter_for(agent).parse(output), AgentOutput)
