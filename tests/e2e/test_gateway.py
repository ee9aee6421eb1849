"""The model gateway end to end under `outpost dev`: a claude job (a stand-in CLI,
tests/e2e/stand_in_claude.py) reaches a fake provider only through the gateway, holds only its
gateway token, and its dispatch shows the tokens and cost the gateway metered."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e import stand_in_claude
from tests.e2e.helpers import TERMINAL, Dev, start_dev, stop_dev, wait_for
from tests.providers.anthropic import FakeAnthropic, Usage

REAL_KEY = "real-anthropic-key-for-the-gateway-0123456789"


@dataclass
class Setup:
    dev: Dev
    provider: FakeAnthropic
    env_file: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("gateway-e2e")
    stand_in_claude.install(root / "bin")
    provider = FakeAnthropic().start()
    env_file = root / "agent-env.json"
    settings = {
        "claude": {
            "default_model": "claude-sonnet-4-5",
            "base_url": provider.url,  # the gateway's upstream for claude: the fake provider
            "extra": {"STANDIN_ENV_FILE": str(env_file)},
        }
    }
    dev = start_dev(
        root / "state",
        extra_env={
            "PATH": stand_in_claude.host_path(root / "bin"),
            "ANTHROPIC_API_KEY": REAL_KEY,
            "OUTPOST_AGENT_SETTINGS": json.dumps(settings),
        },
    )
    try:
        yield Setup(dev, provider, env_file)
    finally:
        stop_dev(dev)
        provider.stop()
        shutil.rmtree(root / "state", ignore_errors=True)


def test_the_agent_holds_only_its_gateway_token_and_the_gateway_meters_its_calls(setup: Setup) -> None:
    dev, provider = setup.dev, setup.provider
    provider.script(
        provider.text("hi", Usage(input_tokens=100, cache_read_input_tokens=900, output_tokens=20))
    )
    created = dev.dispatch("say hi", agent="claude")
    done = dev.wait_status(created["dispatch_id"], TERMINAL, timeout=90)
    assert done["status"] == "COMPLETED", done

    # The agent's environment: the gateway token under the key's name, the gateway as endpoint.
    agent_env = json.loads(setup.env_file.read_text())
    token = agent_env["ANTHROPIC_API_KEY"]
    assert token.startswith("t-") and REAL_KEY not in json.dumps(agent_env)
    assert agent_env["ANTHROPIC_BASE_URL"] == f"{dev.url}/gateway/anthropic"
    assert not [name for name in agent_env if name.startswith("OUTPOST_") and "AGENT" not in name]
    # The provider got the real key, never the token.
    (call,) = provider.model_calls
    assert call.header("x-api-key") == REAL_KEY
    assert token not in json.dumps(call.headers) + call.body.decode()
    # The dispatch's usage is the gateway's: 100 + 900 cached in, 20 out on claude-sonnet-4-5.
    shown = wait_for(
        lambda: (r := dev.get(created["dispatch_id"]))["tokens"] and r, 10, what="metered tokens"
    )
    assert shown["tokens"] == {"input": 1000, "cached": 900, "output": 20}
    assert (shown["cost_usd"], shown["cost_source"]) == ((100 * 3 + 900 * 0.30 + 20 * 15) / 1e6, "gateway")
    # Nothing the job left holds the key; the token no longer works now that the job ended.
    with dev.client() as client:
        items = client.get(f"/dispatch/{created['dispatch_id']}/artifacts").json()["items"]
    for item in items:
        assert REAL_KEY not in httpx.get(item["url"], timeout=30).text, item["name"]
    refused = httpx.post(
        f"{dev.url}/gateway/anthropic/v1/messages",
        json={"model": "claude-sonnet-4-5", "messages": []},
        headers={"x-api-key": token},
        timeout=30,
    )
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
    assert len(provider.model_calls) == 1
