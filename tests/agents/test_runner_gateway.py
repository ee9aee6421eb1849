"""The runner gives each agent its dispatch's gateway token as its provider key and the
gateway's route as its endpoint (agents/runner/model_access.py); claim answers without them
(an older control plane) still parse and leave the task's own settings."""

from __future__ import annotations

import pytest

from agents.adapters import adapter_for
from agents.agent_settings import BASE_URL_ENV
from agents.runner.model_access import gateway_environment
from agents.runner.protocol import Job
from tests.agents.runner_harness import make_job

GATEWAY = "http://control-plane.internal:8080/gateway"
TOKEN = "t-0123.gateway-token-abcdef"
# What the task may hold from an older task definition, or an operator's variable.
TASK_KEYS = {
    "ANTHROPIC_API_KEY": "sk-ant-real",
    "OPENAI_API_KEY": "sk-real",
    "CODEX_API_KEY": "sk-real",
    "GEMINI_API_KEY": "AIza-real",
    "GOOGLE_API_KEY": "AIza-real",
    "GROK_API_KEY": "xai-real",
    "XAI_API_KEY": "xai-real",
    "ANTHROPIC_AUTH_TOKEN": "real-bearer",
}


@pytest.mark.parametrize(
    ("agent", "key", "base_url", "cli_variable"),
    [
        ("claude", "ANTHROPIC_API_KEY", f"{GATEWAY}/anthropic", "ANTHROPIC_BASE_URL"),
        ("codex", "OPENAI_API_KEY", f"{GATEWAY}/openai/v1", None),  # in codex's config file
        ("aider", "OPENAI_API_KEY", f"{GATEWAY}/openai/v1", "OPENAI_API_BASE"),
        ("gemini", "GEMINI_API_KEY", f"{GATEWAY}/gemini", "GOOGLE_GEMINI_BASE_URL"),
        ("grok", "GROK_API_KEY", f"{GATEWAY}/xai/v1", "GROK_BASE_URL"),
    ],
)
def test_the_agent_reaches_its_model_through_the_gateway_with_its_token_only(
    agent: str, key: str, base_url: str, cli_variable: str | None, tmp_path
) -> None:
    task_env = {"PATH": "/usr/bin", BASE_URL_ENV: "https://api.example.com/v1", **TASK_KEYS}
    settings = gateway_environment(task_env, agent=agent, token=TOKEN, gateway_url=GATEWAY)
    adapter = adapter_for(agent)
    env = adapter.environment(settings)
    env.update(adapter.prepare(tmp_path, env))
    assert env[key] == TOKEN and env[BASE_URL_ENV] == base_url
    if cli_variable:
        assert env[cli_variable] == base_url
    assert not set(TASK_KEYS.values()) & set(env.values())  # no real key under any name
    if agent == "codex":
        assert f'base_url = "{base_url}"' in (tmp_path / ".codex" / "config.toml").read_text()


def test_without_a_gateway_token_the_task_keeps_its_own_key_and_endpoint() -> None:
    task_env = {BASE_URL_ENV: "https://proxy.example.com", "ANTHROPIC_API_KEY": "sk-ant-real"}
    assert gateway_environment(task_env, agent="claude", token=None, gateway_url=GATEWAY) == task_env
    assert gateway_environment(task_env, agent="shell", token=TOKEN, gateway_url=GATEWAY) == task_env


def test_claim_answers_with_and_without_the_gateway_fields_parse() -> None:
    old = Job.from_claim(make_job("true", agent="claude"))  # a control plane without a gateway
    assert (old.gateway_token, old.gateway_url) == (None, None)
    new = Job.from_claim({**make_job("true", agent="claude"), "gateway_token": TOKEN, "gateway_url": GATEWAY})
    assert (new.gateway_token, new.gateway_url) == (TOKEN, GATEWAY)
    for bad in ({"gateway_token": 7}, {"gateway_token": ""}, {"gateway_url": "file:///etc"}):
        with pytest.raises(ValueError, match="gateway_"):
            Job.from_claim({**make_job("true"), **bad})


# An agent task's proxy variables (stacks/egress.py proxy_environment writes them).
TASK_PROXY = {
    "HTTPS_PROXY": "http://egress.outpost.internal:3128",
    "https_proxy": "http://egress.outpost.internal:3128",
    "NO_PROXY": "outpost.internal,s3.us-east-1.amazonaws.com,s3.amazonaws.com",
    "no_proxy": "outpost.internal,s3.us-east-1.amazonaws.com,s3.amazonaws.com",
}


@pytest.mark.parametrize("agent", ["claude", "codex", "aider", "gemini", "grok"])
def test_behind_a_proxy_the_gateway_host_is_bypassed_by_its_exact_name(agent: str, tmp_path) -> None:
    """Gemini CLI takes NO_PROXY's "outpost.internal" as that host only (undici's matching)
    and would send its model calls to the egress proxy: the gateway's own name joins both
    spellings, after the task's entries (tests/agents/real/test_behind_egress_proxy.py runs it)."""
    gateway = "http://control-plane.outpost.internal:8080/gateway"
    settings = gateway_environment({**TASK_PROXY}, agent=agent, token=TOKEN, gateway_url=gateway)
    adapter = adapter_for(agent)
    env = adapter.environment(settings)
    env.update(adapter.prepare(tmp_path, env))
    expected = f"{TASK_PROXY['NO_PROXY']},control-plane.outpost.internal"
    assert (env["NO_PROXY"], env["no_proxy"]) == (expected, expected)
    assert env["HTTPS_PROXY"] == TASK_PROXY["HTTPS_PROXY"]


def test_the_gateway_host_joins_no_proxy_only_behind_a_proxy_and_once() -> None:
    def no_proxy(env: dict[str, str]) -> tuple[str | None, str | None]:
        result = gateway_environment(env, agent="gemini", token=TOKEN, gateway_url=GATEWAY)
        return result.get("NO_PROXY"), result.get("no_proxy")

    assert no_proxy({}) == (None, None)  # no proxy: nothing to bypass
    assert no_proxy({"NO_PROXY": "example.com"}) == ("example.com", None)
    # one spelling set: both get it, with the gateway
    assert no_proxy({"https_proxy": "http://p:3128", "no_proxy": "a.internal"}) == (
        "a.internal,control-plane.internal",
        "a.internal,control-plane.internal",
    )
    assert no_proxy({"HTTP_PROXY": "http://p:3128"}) == ("control-plane.internal",) * 2
    # already named (any case): unchanged
    listed = "Control-Plane.internal,b"
    assert no_proxy({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": listed, "no_proxy": listed}) == (
        listed,
        listed,
    )
