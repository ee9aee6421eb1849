"""Per-agent model and endpoint settings: checked when loaded, carried by the task definitions.

The synthesized stage here is the Dev stage of cdk.json with production-shaped settings added
(the real model names and provider endpoints an operator would set), through the real gate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from agents.agent_settings import BASE_URL_ENV, MODEL_ENV, check_variable_name, parse_agent_settings
from agents.egress import PROXY_VARIABLES
from agents.registry import AGENTS, PROVIDER_KEY_ENV
from app import build_app
from control_plane.runtime.container_spec import load_agent_settings, load_specs
from stacks.config import CONTEXT_KEY, ConfigError, load_environments

ROOT = Path(__file__).resolve().parents[2]

SETTINGS: dict[str, Any] = {
    "claude": {
        "default_model": "claude-sonnet-4-5",
        "allowed_models": ["claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5"],
        "base_url": "https://gateway.example.com/anthropic",
        "extra": {"DISABLE_TELEMETRY": "1", "MAX_THINKING_TOKENS": "8000"},
    },
    "codex": {
        "default_model": "gpt-5-codex",
        "base_url": "https://gateway.example.com/openai/v1",
        "egress": ["proxy.golang.org", "*.crates.io"],  # codex tasks only, in this environment
    },
    "gemini": {"default_model": "gemini-2.5-pro", "allowed_models": ["gemini-2.5-pro", "gemini-2.5-flash"]},
}
# A GitHub App set up for publishing; its private key is a secret the operator created.
GITHUB: dict[str, str] = {
    "url": "https://github.example.com",
    "api_url": "https://github.example.com/api/v3",
    "app_id": "424242",
    "secret_name": "outpost/dev/github-app-key",
}


def context(settings: Any) -> dict[str, Any]:
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    context[CONTEXT_KEY]["dev"]["agent_settings"] = settings
    return context


def load_dev(settings: Any) -> Any:
    (config,) = load_environments(context(settings)[CONTEXT_KEY], selected="dev")
    return config


def test_settings_load_into_the_environment_config() -> None:
    config = load_dev(SETTINGS)
    claude = config.agent_settings["claude"]
    assert claude.default_model == "claude-sonnet-4-5"
    assert claude.allows("claude-opus-4-1") and not claude.allows("gpt-5")
    assert config.agent_settings["codex"].allows("gpt-5-codex")  # the default is always allowed
    assert not config.agent_settings["codex"].allows("gpt-5")
    assert "shell" not in config.agent_settings


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"claude": {"extra": {"ANTHROPIC_API_KEY": "x"}}}, "looks like a secret's name"),
        ({"claude": {"extra": {"GITHUB_TOKEN": "x"}}}, "looks like a secret's name"),
        ({"claude": {"extra": {"DB_PASSWORD": "x"}}}, "looks like a secret's name"),
        ({"claude": {"extra": {"OUTPOST_AGENT_MODEL": "x"}}}, "is set by Outpost"),
        ({"claude": {"extra": {"OUTPOST_CLAIM_TOKEN_X": "x"}}}, "secret"),
        ({"claude": {"extra": {"PATH": "/evil"}}}, "is set by Outpost"),
        ({"claude": {"extra": {"LD_PRELOAD": "/evil.so"}}}, "is set by Outpost"),
        ({"claude": {"extra": {"AWS_REGION": "us-east-1"}}}, "is set by Outpost"),
        ({"claude": {"extra": {"ANTHROPIC_BASE_URL": "https://x"}}}, "set `base_url`"),
        ({"claude": {"extra": {"lower": "x"}}}, "must be 1-64 of A-Z 0-9 _"),
        ({"claude": {"extra": {"NOTE": "sk-ant-api03-abcdefghijkl"}}}, "looks like a key"),
        ({"claude": {"extra": {"NOTE": "line\nbreak"}}}, "control characters"),
        ({"claude": {"extra": {"NOTE": 3}}}, "must be a string"),
        ({"claude": {"extra": {"NOTE": "x" * 1025}}}, "longer than 1024"),
        ({"claude": {"base_url": "https://user:pw@gateway.example.com"}}, "must not carry credentials"),
        ({"claude": {"base_url": "https://gateway.example.com/?key=abc"}}, "must not carry credentials"),
        ({"claude": {"base_url": "file:///etc/passwd"}}, "http(s)://host"),
        ({"claude": {"base_url": "http://gateway.example.com/anthropic"}}, "must be https://"),
        ({"claude": {"base_url": "https://"}}, "http(s)://host"),
        ({"claude": {"default_model": "x", "allowed_models": ["y"]}}, "not in allowed_models"),
        ({"claude": {"allowed_models": ["a", "a"]}}, "lists a model twice"),
        ({"claude": {"default_model": "-rf"}}, "a model name is"),
        ({"claude": {"default_model": "a b"}}, "a model name is"),
        ({"claude": {"colour": "blue"}}, "unknown setting"),
        ({"claude": {"egress": ["https://pypi.org"]}}, "'https://pypi.org': not a host name"),
        ({"claude": {"egress": ["203.0.113.7"]}}, "an address, not a host name"),
        ({"claude": {"egress": ["*.org"]}}, "too broad"),
        ({"claude": {"egress": ["pypi.org", "pypi.org"]}}, "lists a host twice"),
        ({"claude": {"egress": "pypi.org"}}, "must be a list of at most 50 host patterns"),
        ({"nope": {}}, "not an agent of this environment"),
        ({"claude": "claude-sonnet-4-5"}, "must be an object"),
    ],
)
def test_bad_settings_stop_synth_with_one_line(settings: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_dev(settings)
    text = str(caught.value)
    assert message in text and "\n" not in text
    assert text.startswith("config: environment 'dev', field 'agent_settings.")


def test_settings_of_an_agent_the_environment_does_not_deploy_are_refused() -> None:
    raw = context({"grok": {"default_model": "grok-4"}})[CONTEXT_KEY]
    raw["dev"]["agents"] = ["claude", "shell"]
    with pytest.raises(ConfigError, match="not an agent of this environment"):
        load_environments(raw, selected="dev")


@pytest.fixture(scope="module")
def dev_stage(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """The Dev stage synthesized with SETTINGS: (fleet template, cloud assembly directory)."""
    outdir = tmp_path_factory.mktemp("cdk.out")
    # One synthesis serves two concerns: the agent settings, and publishing (the tests at the
    # end of this module: GITHUB reaches the control plane).
    with_github = context(SETTINGS)
    with_github[CONTEXT_KEY]["dev"]["github"] = GITHUB
    app = cdk.App(outdir=str(outdir), context={**with_github, "env": "dev"})
    (stage,) = build_app(app)
    assembly = app.synth()  # raises if the security gate finds anything unacknowledged
    for stack in assembly.get_nested_assembly(f"assembly-{stage.stage_name}").stacks:
        if stack.hierarchical_id.endswith("/Fleet"):
            return stack.template, outdir
    raise AssertionError("no Fleet stack")


def agent_container(template: dict[str, Any], agent: str) -> dict[str, Any]:
    """The agent's container, without the egress proxy's variables (tests/infra/test_egress.py)."""
    (task,) = [
        r["Properties"]
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::ECS::TaskDefinition" and k.startswith(f"Agent{agent.capitalize()}")
    ]
    (container,) = task["ContainerDefinitions"]
    container = dict(container)
    settings = [e for e in container.pop("Environment", []) if e["Name"] not in PROXY_VARIABLES]
    return {**container, "Environment": settings} if settings else container


def test_task_definitions_carry_each_agents_settings(dev_stage: tuple[dict[str, Any], Path]) -> None:
    template, _ = dev_stage
    claude = {e["Name"]: e["Value"] for e in agent_container(template, "claude")["Environment"]}
    assert claude == {
        MODEL_ENV: "claude-sonnet-4-5",
        BASE_URL_ENV: "https://gateway.example.com/anthropic",
        "DISABLE_TELEMETRY": "1",
        "MAX_THINKING_TOKENS": "8000",
    }
    codex = {e["Name"]: e["Value"] for e in agent_container(template, "codex")["Environment"]}
    assert codex == {MODEL_ENV: "gpt-5-codex", BASE_URL_ENV: "https://gateway.example.com/openai/v1"}
    gemini = {e["Name"]: e["Value"] for e in agent_container(template, "gemini")["Environment"]}
    assert gemini == {MODEL_ENV: "gemini-2.5-pro"}
    for agent in ("aider", "grok", "shell"):  # no settings: no environment, the CLI's defaults
        assert "Environment" not in agent_container(template, agent)


def test_task_definitions_hold_no_secret_values(dev_stage: tuple[dict[str, Any], Path]) -> None:
    template, _ = dev_stage
    for agent in AGENTS:
        container = agent_container(template, agent)
        for variable in container.get("Environment", []):
            assert isinstance(variable["Value"], str)
            name = variable["Name"]
            assert name in (MODEL_ENV, BASE_URL_ENV) or check_variable_name(name) is None
            assert name not in PROVIDER_KEY_ENV.values()
        # nor a reference: the provider key stays with the control plane's model gateway
        assert "Secrets" not in container


def test_control_plane_reads_the_same_settings(dev_stage: tuple[dict[str, Any], Path]) -> None:
    template, _ = dev_stage
    (container,) = [
        r["Properties"]["ContainerDefinitions"][0]
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::ECS::TaskDefinition" and k.startswith("ControlPlane")
    ]
    (raw,) = [e["Value"] for e in container["Environment"] if e["Name"] == "OUTPOST_AGENT_SETTINGS"]
    assert parse_agent_settings(json.loads(raw), agents=AGENTS) == parse_agent_settings(
        SETTINGS, agents=AGENTS
    )


def test_container_runtime_reads_the_settings_from_the_task_definition(
    dev_stage: tuple[dict[str, Any], Path],
) -> None:
    _, outdir = dev_stage
    specs = {agent: dict(spec.environment) for agent, spec in load_specs(outdir).items()}
    settings = {
        agent: {k: v for k, v in env.items() if k not in PROXY_VARIABLES} for agent, env in specs.items()
    }
    assert settings["codex"] == {
        MODEL_ENV: "gpt-5-codex",
        BASE_URL_ENV: "https://gateway.example.com/openai/v1",
    }
    assert settings["shell"] == {}
    # and `outpost dev --runtime container` checks dispatch models against the same settings
    assert parse_agent_settings(load_agent_settings(outdir), agents=AGENTS) == parse_agent_settings(
        SETTINGS, agents=AGENTS
    )


# Publishing on a deployed stage: the control plane gets the GitHub settings as environment and
# the operator's secret through ECS, under the variable its settings read (control_plane/settings.py).


def control_plane_container(template: dict[str, Any]) -> dict[str, Any]:
    (container,) = [
        c
        for r in template["Resources"].values()
        if r["Type"] == "AWS::ECS::TaskDefinition"
        for c in r["Properties"]["ContainerDefinitions"]
        if c["Name"] == "control-plane"
    ]
    return dict(container)


def test_the_control_plane_gets_the_github_settings_and_the_operators_secret(
    dev_stage: tuple[dict[str, Any], Path],
) -> None:
    template, _ = dev_stage
    container = control_plane_container(template)
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert environment["OUTPOST_GITHUB_URL"] == GITHUB["url"]
    assert environment["OUTPOST_GITHUB_API_URL"] == GITHUB["api_url"]
    assert environment["OUTPOST_GITHUB_APP_ID"] == GITHUB["app_id"]
    assert "OUTPOST_GITHUB_TOKEN" not in environment and "OUTPOST_GITHUB_APP_PRIVATE_KEY" not in environment
    secrets = {s["Name"]: json.dumps(s["ValueFrom"]) for s in container["Secrets"]}
    assert set(secrets) == {"OUTPOST_ADMIN_KEY", "OUTPOST_GITHUB_APP_PRIVATE_KEY"}
    assert GITHUB["secret_name"] in secrets["OUTPOST_GITHUB_APP_PRIVATE_KEY"]


def test_only_the_control_planes_execution_role_may_read_the_github_secret(
    dev_stage: tuple[dict[str, Any], Path],
) -> None:
    template, _ = dev_stage
    readers = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            if GITHUB["secret_name"] in json.dumps(statement["Resource"]):
                assert statement["Action"] == "secretsmanager:GetSecretValue" or set(statement["Action"]) <= {
                    "secretsmanager:GetSecretValue",
                    "secretsmanager:DescribeSecret",
                }
                readers.append(logical_id)
    assert readers and all(r.startswith("ControlPlaneExecutionRole") for r in readers), readers
    # The secret's ARN ends in a random suffix the operator's secret got at creation.
    assert f"{GITHUB['secret_name']}-??????" in json.dumps(template["Resources"])
    for agent in ("claude", "codex", "gemini"):
        assert "GITHUB" not in json.dumps(agent_container(template, agent))


def test_agents_and_the_control_plane_may_reach_the_configured_hosts(
    dev_stage: tuple[dict[str, Any], Path],
) -> None:
    """The GitHub dispatches publish to is on the agents' allowlist (the runner pushes there)
    and its API on the VPC's (the control plane calls it); an operator's provider base URL is
    the control plane's to resolve (docs/egress.md)."""
    template, _ = dev_stage
    environment = {e["Name"]: e["Value"] for e in control_plane_container(template)["Environment"]}
    allowlist = json.loads(environment["OUTPOST_EGRESS_ALLOWLIST"])
    assert allowlist[-1] == "github.example.com" and "github.com" in allowlist
    (resolvable,) = [
        r["Properties"]["Domains"]
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::Route53Resolver::FirewallDomainList" and k.startswith("DnsFirewallAllowed")
    ]
    assert {"github.example.com", "gateway.example.com", *allowlist} <= set(map(str, resolvable))


def test_a_token_instead_of_an_app_goes_under_the_token_variable() -> None:
    raw = context({})[CONTEXT_KEY]
    raw["dev"]["github"] = {"secret_name": "outpost/dev/github-token"}
    (config,) = load_environments(raw, selected="dev")
    from stacks.fleet import FleetStack

    assert config.github is not None and config.github.url == "https://github.com"
    assert FleetStack._github_environment(config) == {
        "OUTPOST_GITHUB_URL": "https://github.com",
        "OUTPOST_GITHUB_API_URL": "https://api.github.com",
    }


@pytest.mark.parametrize(
    ("github", "message"),
    [
        ({}, "secret_name"),
        ({"secret_name": "outpost/dev/key", "url": "http://github.example.com"}, "https://"),
        ({"secret_name": "outpost/dev/key", "app_id": "abc"}, "numeric id"),
        ({"secret_name": "outpost/dev/key", "token": "ghp_x"}, "unknown setting"),
        ({"secret_name": "has space"}, "Secrets Manager secret name"),
        ("github.com", "must be a mapping"),
    ],
)
def test_bad_github_settings_are_refused_with_one_line(github: Any, message: str) -> None:
    raw = context({})[CONTEXT_KEY]
    raw["dev"]["github"] = github
    with pytest.raises(ConfigError, match=message):
        load_environments(raw, selected="dev")


def test_an_agents_egress_additions_reach_its_listener_the_dns_list_and_the_repository_check(
    dev_stage: tuple[dict[str, Any], Path],
) -> None:
    """agent_settings.codex.egress: codex's proxy listener and the DNS Firewall list carry it,
    claude's listener does not, and the control plane's settings hold it for the repository check."""
    template, _ = dev_stage
    resources = template["Resources"]
    (proxy,) = [
        r["Properties"]["ContainerDefinitions"][0]
        for k, r in resources.items()
        if r["Type"] == "AWS::ECS::TaskDefinition" and k.startswith("EgressProxy")
    ]
    (raw,) = [e["Value"] for e in proxy["Environment"] if e["Name"] == "OUTPOST_EGRESS_PROXY_LISTENERS"]
    hosts = {entry["agent"]: set(entry["hosts"]) for entry in json.loads(raw).values()}
    assert {"proxy.golang.org", "*.crates.io"} <= hosts["codex"]
    assert not {"proxy.golang.org", "*.crates.io"} & hosts["claude"]
    (domains,) = [
        r["Properties"]["Domains"]
        for k, r in resources.items()
        if r["Type"] == "AWS::Route53Resolver::FirewallDomainList" and k.startswith("DnsFirewallAllowed")
    ]
    assert {"proxy.golang.org", "*.crates.io"} <= set(d for d in domains if isinstance(d, str))
    (control,) = [
        r["Properties"]["ContainerDefinitions"][0]
        for k, r in resources.items()
        if r["Type"] == "AWS::ECS::TaskDefinition" and k.startswith("ControlPlane")
    ]
    (settings,) = [e["Value"] for e in control["Environment"] if e["Name"] == "OUTPOST_AGENT_SETTINGS"]
    assert json.loads(settings)["codex"]["egress"] == ["proxy.golang.org", "*.crates.io"]
