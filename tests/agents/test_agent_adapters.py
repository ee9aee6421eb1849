"""The adapters: command lines per agent, and parsing of each CLI's documented output."""

from __future__ import annotations

import json
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


# -- what the pinned CLIs really print (seen running them against a loopback provider) --------


def test_claude_without_result_event_reports_what_it_said() -> None:
    # Claude Code 2.1.331 as root without IS_SANDBOX: one line, exit 1, no event at all.
    output = adapter_for("claude").parse(
        "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons\n"
    )

    assert output.error == (
        "Claude Code ended without a result event: --dangerously-skip-permissions cannot be used"
        " with root/sudo privileges for security reasons"
    )


@pytest.mark.parametrize(
    ("agent", "env", "argv_tail", "variables"),
    [
        ("claude", {"OUTPOST_AGENT_MODEL": "claude-sonnet-4-5", "OUTPOST_AGENT_BASE_URL": "http://gw:8080"},
         ["--model", "claude-sonnet-4-5", "--"], {"ANTHROPIC_BASE_URL": "http://gw:8080"}),
        ("aider", {"OUTPOST_AGENT_MODEL": "openai/gpt-4o", "OUTPOST_AGENT_BASE_URL": "http://gw:8080/v1"},
         ["--model", "openai/gpt-4o"], {"OPENAI_API_BASE": "http://gw:8080/v1"}),
        ("grok", {"OUTPOST_AGENT_MODEL": "grok-4-latest", "OUTPOST_AGENT_BASE_URL": "http://gw:8080/v1"},
         [], {"GROK_MODEL": "grok-4-latest", "GROK_BASE_URL": "http://gw:8080/v1"}),
    ],
)  # fmt: skip
def test_translate_model_and_endpoint(
    agent: str, env: dict[str, str], argv_tail: list[str], variables: dict[str, str], tmp_path: Path
) -> None:
    adapter = adapter_for(agent)
    command = adapter.command("fix it", scratch=tmp_path, env=env)
    extra = adapter.prepare(tmp_path / "home", env)

    assert " ".join(argv_tail) in " ".join(command)
    assert {k: extra[k] for k in variables} == variables
    bare = adapter.command("fix it", scratch=tmp_path, env={})
    assert "--model" not in bare
    assert not set(variables) & set(adapter.prepare(tmp_path / "home2", {}))


def test_aider_price_cache_keeps_it_off_the_network(tmp_path: Path) -> None:
    adapter_for("aider").prepare(tmp_path, {})

    cache = tmp_path / ".aider" / "caches" / "model_prices_and_context_window.json"
    assert json.loads(cache.read_text())  # non-empty: aider downloads when it is empty
    assert adapter_for("aider").environment({})["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"


AIDER_EDITED = """Aider v0.86.2
Main model: openai/gpt-4o with diff edit format
Weak model: gpt-4o-mini
Git repo: .git with 1 files
Repo-map: using 4096 tokens, auto refresh

greet.py
```python
<<<<<<< SEARCH
def greet():
=======
def greet(name):
>>>>>>> REPLACE
```

I gave greet() a name parameter.

Tokens: 1.2k sent, 60 received. Cost: $0.0036 message, $0.0036 session.

greet.py
greet.py
```python
<<<<<<< SEARCH
def greet():
=======
def greet(name):
>>>>>>> REPLACE
```

I gave greet() a name parameter.

Tokens: 1.6k sent, 80 received. Cost: $0.0048 message, $0.0084 session.
Applied edit to greet.py
"""

AIDER_REFUSED = """Aider v0.86.2
Main model: openai/gpt-4o with diff edit format
Repo-map: using 4096 tokens, auto refresh

litellm.AuthenticationError: AuthenticationError: OpenAIException - Incorrect
API key provided
The API provider is not able to authenticate you. Check your API key.

"""


def test_parse_aider_answer_after_it_added_the_file() -> None:
    output = adapter_for("aider").parse(AIDER_EDITED)

    assert output.final_message == "I gave greet() a name parameter."
    assert (output.input_tokens, output.output_tokens, output.cost_usd) == (2800, 140, 0.0084)
    assert output.error is None


def test_parse_aider_provider_error() -> None:
    output = adapter_for("aider").parse(AIDER_REFUSED)

    assert output.error == (
        "litellm.AuthenticationError: AuthenticationError: OpenAIException - Incorrect API key provided"
        " The API provider is not able to authenticate you. Check your API key."
    )


def test_parse_grok_provider_error() -> None:
    lines = [
        {"role": "user", "content": "fix it"},
        {"role": "assistant", "content": "Sorry, I encountered an error: 401 Incorrect API key provided"},
    ]
    output = adapter_for("grok").parse("\n".join(json.dumps(line) for line in lines))

    assert output.error == "Sorry, I encountered an error: 401 Incorrect API key provided"


@pytest.mark.parametrize(
    ("agent", "pattern"), [("aider", "/.aider.tags.cache.v*/"), ("grok", "/.grok/settings.json")]
)
def test_exclude_tool_state_from_the_patch(agent: str, pattern: str) -> None:
    assert pattern in adapter_for(agent).ignored
