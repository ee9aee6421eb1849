"""Per-agent model and endpoint settings, set by the operator per environment.

Each agent may have a default model, a list of models a dispatch may choose, the provider's
base URL and extra non-secret variables for its CLI. One function, ``agent_environment``,
turns them into the agent's environment for every runtime: the CDK app puts its result into
the agent's task definition, the local and container runtimes into the runner they start.
The runner passes ``OUTPOST_AGENT_MODEL`` (the dispatch's model when it chose one) and
``OUTPOST_AGENT_BASE_URL`` to the adapter, which translates them for its CLI.

Nothing here may hold a secret: task definition environments are readable by anyone who can
describe the task definition. Provider keys come from Secrets Manager (or, in local mode, the
host's own key variable). So names that look like secrets, values that look like keys and
names that collide with Outpost's own variables are refused when the settings are loaded.

This module must stay importable without aws-cdk-lib: the control plane reads it at run time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from agents.egress import pattern_problem
from agents.errors import SettingError

MODEL_ENV = "OUTPOST_AGENT_MODEL"
BASE_URL_ENV = "OUTPOST_AGENT_BASE_URL"

MAX_MODELS = 50
MAX_EXTRA = 32
MAX_EGRESS = 50
SETTING_NAMES = ("default_model", "allowed_models", "base_url", "extra", "egress")
MAX_VALUE_CHARS = 1024
MAX_URL_CHARS = 2048

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")
_VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
# Names that say they hold a secret: those belong in Secrets Manager, never in an environment
# that the task definition shows in clear.
_SECRET_NAME = re.compile(
    r"(^|_)(KEY|APIKEY|TOKEN|SECRET|PASSWORD|PASSWD|PASS|PWD|CREDENTIALS?|AUTH|COOKIE|SESSION|PRIVATE)(_|$)"
)  # whole words: MAX_THINKING_TOKENS is a setting, GITHUB_TOKEN a secret
# Values shaped like the keys of the providers, GitHub and AWS: pasted into the wrong field.
_SECRET_VALUE = re.compile(r"(sk-[A-Za-z0-9_-]{8}|AIza[A-Za-z0-9_-]{8}|xai-[A-Za-z0-9]{8}|gh[pousr]_[A-Za-z0-9]{8}|"
                           r"github_pat_|AKIA[A-Z0-9]{12}|-----BEGIN)")  # fmt: skip
# Variables Outpost, the runner or the process itself sets; an extra setting must not replace them.
_RESERVED_PREFIXES = ("OUTPOST_", "AWS_", "ECS_", "GIT_", "LD_", "DYLD_", "PYTHON", "NODE_", "NPM_", "LC_")
_RESERVED_NAMES = frozenset(
    {"PATH", "HOME", "TMPDIR", "USER", "LOGNAME", "SHELL", "PWD", "LANG", "TZ", "IS_SANDBOX"}
    | {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR"}
    | {"REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "CODEX_HOME", "GEMINI_CLI_HOME"}
)
# The provider endpoint is `base_url`: one setting the adapter translates for its CLI.
_ENDPOINT_NAME = re.compile(r"(BASE_URL|API_BASE|ENDPOINT)$")


class AgentSettingsError(SettingError):
    """An invalid agent setting; the message names the agent and the field."""

    def __init__(self, agent: str, field_name: str, problem: str) -> None:
        super().__init__(f"agent settings: agent '{agent}', field '{field_name}': {problem}")
        self.agent = agent
        self.field_name = field_name
        self.problem = problem


@dataclass(frozen=True)
class AgentSettings:
    default_model: str | None = None  # None: the CLI's own default
    allowed_models: tuple[str, ...] = ()  # what a dispatch may ask for, besides the default
    base_url: str | None = None  # None: the CLI's default endpoint
    extra: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # hosts this agent's tasks may reach in this environment besides its egress_allowlist and the
    # agent's registry additions (agents/egress.py patterns; docs/egress.md)
    egress: tuple[str, ...] = ()

    def allows(self, model: str) -> bool:
        return model in self.allowed_models or model == self.default_model

    def choosable(self) -> list[str]:
        """Every model a dispatch may name, for error messages."""
        models = list(self.allowed_models)
        if self.default_model and self.default_model not in models:
            models.insert(0, self.default_model)
        return models

    def to_json(self) -> dict[str, Any]:
        return {
            "default_model": self.default_model,
            "allowed_models": list(self.allowed_models),
            "base_url": self.base_url,
            "extra": dict(self.extra),
            "egress": list(self.egress),
        }


def agent_environment(settings: AgentSettings | None) -> dict[str, str]:
    """The agent's settings as environment variables: the same in every runtime."""
    if settings is None:
        return {}
    env = dict(settings.extra)
    if settings.default_model:
        env[MODEL_ENV] = settings.default_model
    if settings.base_url:
        env[BASE_URL_ENV] = settings.base_url
    return env


def check_model_name(model: str) -> str:
    """A model name as providers spell them; raises ValueError."""
    if not MODEL_NAME.match(model):
        raise ValueError(
            "a model name is 1-128 of A-Z a-z 0-9 . _ : / @ + - (starting with a letter or digit)"
        )
    return model


def _check_text(value: str) -> str | None:
    if len(value) > MAX_VALUE_CHARS:
        return f"longer than {MAX_VALUE_CHARS} characters"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "holds control characters (newlines included)"
    if _SECRET_VALUE.search(value):
        return "looks like a key or credential; provider keys come from Secrets Manager, never from settings"
    return None


def _check_base_url(url: str, *, local: bool) -> str | None:
    if len(url) > MAX_URL_CHARS or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        return f"must be at most {MAX_URL_CHARS} characters, without spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on an invalid port
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be an http(s)://host[:port][/path] URL"
    if parts.scheme == "http" and not local:
        # the provider key goes with every request: plain HTTP only to a local mode test server
        return "must be https:// (http:// is for local mode only)"
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        return "must not carry credentials, a query or a fragment (keys come from Secrets Manager)"
    return None


def check_variable_name(name: str) -> str | None:
    """Why ``name`` cannot be an extra setting, or None when it can."""
    if not _VARIABLE.match(name):
        return "must be 1-64 of A-Z 0-9 _, starting with a letter"
    if _SECRET_NAME.search(name):
        return "looks like a secret's name; secrets come from Secrets Manager, never from settings"
    if name in _RESERVED_NAMES or name.startswith(_RESERVED_PREFIXES):
        return "is set by Outpost, the runner or the system; choose another name"
    if _ENDPOINT_NAME.search(name):
        return "names an endpoint: set `base_url`, which the agent's adapter translates for its CLI"
    return None


def parse_one(agent: str, raw: Any, *, local: bool = False) -> AgentSettings:
    """One agent's settings from their JSON form (``local``: local mode, where the endpoint may
    be plain HTTP); raises AgentSettingsError."""

    def fail(field_name: str, problem: str) -> AgentSettingsError:
        return AgentSettingsError(agent, field_name, problem)

    if not isinstance(raw, Mapping):
        raise fail("*", f"must be an object with {', '.join(SETTING_NAMES)}")
    unknown = sorted(set(raw) - set(SETTING_NAMES))
    if unknown:
        raise fail(unknown[0], f"unknown setting; known: {', '.join(SETTING_NAMES)}")

    def model(field_name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise fail(field_name, f"{value!r} must be a string")
        try:
            return check_model_name(value)
        except ValueError as error:
            raise fail(field_name, f"{value!r}: {error}") from None

    default = raw.get("default_model")
    default = None if default is None else model("default_model", default)
    allowed_raw = raw.get("allowed_models") or []
    if not isinstance(allowed_raw, list | tuple) or len(allowed_raw) > MAX_MODELS:
        raise fail("allowed_models", f"must be a list of at most {MAX_MODELS} model names")
    allowed = tuple(model("allowed_models", m) for m in allowed_raw)
    if len(set(allowed)) != len(allowed):
        raise fail("allowed_models", "lists a model twice")
    if default and allowed and default not in allowed:
        raise fail("default_model", f"{default!r} is not in allowed_models")
    base_url = raw.get("base_url")
    if base_url is not None:
        problem = (
            "must be a string" if not isinstance(base_url, str) else _check_base_url(base_url, local=local)
        )
        if problem:
            raise fail("base_url", f"{base_url!r}: {problem}")
    extra_raw = raw.get("extra") or {}
    if not isinstance(extra_raw, Mapping) or len(extra_raw) > MAX_EXTRA:
        raise fail("extra", f"must be an object of at most {MAX_EXTRA} NAME: value strings")
    for name, value in extra_raw.items():
        problem = check_variable_name(name) if isinstance(name, str) else "must be a string"
        if problem:
            raise fail(f"extra.{name}", problem)
        problem = "must be a string" if not isinstance(value, str) else _check_text(value)
        if problem:
            raise fail(f"extra.{name}", f"value {problem}")
    egress_raw = raw.get("egress") or []
    if not isinstance(egress_raw, list | tuple) or len(egress_raw) > MAX_EGRESS:
        raise fail("egress", f"must be a list of at most {MAX_EGRESS} host patterns")
    for pattern in egress_raw:
        if (problem := pattern_problem(pattern)) is not None:
            raise fail("egress", f"{pattern!r}: {problem}")
    if len(set(egress_raw)) != len(egress_raw):
        raise fail("egress", "lists a host twice")
    return AgentSettings(
        default_model=default,
        allowed_models=allowed,
        base_url=base_url,
        extra=MappingProxyType(dict(extra_raw)),
        egress=tuple(egress_raw),
    )


def parse_agent_settings(
    raw: Any, *, agents: Iterable[str], local: bool = False
) -> Mapping[str, AgentSettings]:
    """``{agent: settings}`` from JSON (cdk.json or OUTPOST_AGENT_SETTINGS); every agent named
    must be one of ``agents``; ``local`` for local mode. Raises AgentSettingsError."""
    known = list(agents)
    if raw is None:
        return MappingProxyType({})
    if not isinstance(raw, Mapping):
        raise AgentSettingsError("*", "*", "must be an object mapping agent names to their settings")
    parsed: dict[str, AgentSettings] = {}
    for agent, value in raw.items():
        if agent not in known:
            raise AgentSettingsError(
                str(agent), "*", f"not an agent of this environment; known: {', '.join(known)}"
            )
        parsed[agent] = parse_one(agent, value, local=local)
    return MappingProxyType(parsed)


def settings_json(settings: Mapping[str, AgentSettings]) -> dict[str, Any]:
    """The JSON form ``parse_agent_settings`` reads back (the control plane's variable)."""
    return {agent: value.to_json() for agent, value in settings.items()}
