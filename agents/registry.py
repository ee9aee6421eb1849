"""The agent registry: one entry per agent, read by the CDK app and by the control plane.

Adding an agent is one entry here plus one Dockerfile in ``agents/images/<image>/``.
This module must stay importable without aws-cdk-lib: the control plane reads it at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from agents.egress import pattern_problem
from agents.errors import SettingError

ENVIRONMENTS = ("dev", "staging", "prod")

# Secrets Manager secrets an agent may receive (one each). The data stack creates exactly these.
PROVIDER_SECRETS = ("anthropic", "openai", "google", "xai")
# The environment variable each provider's CLI reads its key from (injected by ECS from the secret).
PROVIDER_KEY_ENV = MappingProxyType(
    {
        "anthropic": "ANTHROPIC_API_KEY",
        "openai": "OPENAI_API_KEY",
        "google": "GEMINI_API_KEY",
        "xai": "GROK_API_KEY",
    }
)
ARCHITECTURES = ("X86_64", "ARM64")
# Fargate Spot runs Linux/X86_64 tasks only; ARM64 (Graviton) tasks are not offered Spot capacity.
SPOT_ARCHITECTURES = ("X86_64",)

# Fargate's task sizes: CPU units -> allowed memory (MiB).
FARGATE_SIZES: Mapping[int, tuple[int, ...]] = MappingProxyType(
    {
        256: (512, 1024, 2048),
        512: tuple(range(1024, 4097, 1024)),
        1024: tuple(range(2048, 8193, 1024)),
        2048: tuple(range(4096, 16385, 1024)),
        4096: tuple(range(8192, 30721, 1024)),
        8192: tuple(range(16384, 61441, 4096)),
        16384: tuple(range(32768, 122881, 8192)),
    }
)


class RegistryError(SettingError):
    """An invalid registry entry; the message names the agent and the field."""

    def __init__(self, agent: str, field_name: str, problem: str) -> None:
        super().__init__(f"agent registry: agent '{agent}', field '{field_name}': {problem}")
        self.agent = agent
        self.field_name = field_name


@dataclass(frozen=True)
class Agent:
    name: str
    image: str  # the ECR repository (and agents/images/ folder) the agent's image comes from
    command: tuple[str, ...]  # the CLI the agent runs, non-interactively (see agents/adapters)
    secret: str | None  # the one provider secret it needs (PROVIDER_SECRETS), None for shell
    cpu: int = 1024
    memory: int = 2048
    architecture: str = "X86_64"
    spot: bool = True
    storage_gib: int = 30  # task-local storage (image, workspace, scratch); Fargate: 21-200
    default_timeout_s: int = 1800
    max_timeout_s: int = 7200
    warm_pool: Mapping[str, int] = field(default_factory=lambda: {"dev": 0, "staging": 1, "prod": 2})
    # Hosts this agent's tasks need besides the environment's egress_allowlist (agents/egress.py
    # patterns; docs/egress.md). Model calls go through the control plane's gateway, never here.
    egress: tuple[str, ...] = ()

    def validate(self) -> None:
        def fail(field_name: str, problem: str) -> None:
            raise RegistryError(self.name, field_name, problem)

        if not self.name.isidentifier() or self.name != self.name.lower():
            fail("name", f"{self.name!r} must be a lower-case identifier")
        if self.secret is not None and self.secret not in PROVIDER_SECRETS:
            fail("secret", f"unknown secret {self.secret!r}; known: {', '.join(PROVIDER_SECRETS)}")
        if self.cpu not in FARGATE_SIZES:
            fail("cpu", f"{self.cpu} is not a Fargate CPU size ({sorted(FARGATE_SIZES)})")
        if self.memory not in FARGATE_SIZES[self.cpu]:
            fail("memory", f"{self.memory} MiB is not offered by Fargate with cpu {self.cpu}")
        if self.architecture not in ARCHITECTURES:
            fail("architecture", f"{self.architecture!r} is not one of {ARCHITECTURES}")
        if self.spot and self.architecture not in SPOT_ARCHITECTURES:
            fail("spot", f"Fargate Spot is not offered for {self.architecture}")
        if not 21 <= self.storage_gib <= 200:
            fail("storage_gib", f"{self.storage_gib} is outside Fargate's 21-200 GiB of task storage")
        if not 0 < self.default_timeout_s <= self.max_timeout_s:
            fail("default_timeout_s", "must be positive and at most max_timeout_s")
        if not self.command:
            fail("command", "must not be empty")
        for env, size in self.warm_pool.items():
            if env not in ENVIRONMENTS:
                fail("warm_pool", f"unknown environment {env!r}")
            if not isinstance(size, int) or size < 0:
                fail("warm_pool", f"{env}: {size!r} must be a non-negative integer")
        for pattern in self.egress:
            if (problem := pattern_problem(pattern)) is not None:
                fail("egress", f"{pattern!r}: {problem}")


def build_registry(agents: list[Agent]) -> Mapping[str, Agent]:
    """Validate entries and index them by name; refuses duplicates."""
    registry: dict[str, Agent] = {}
    for agent in agents:
        agent.validate()
        if agent.name in registry:
            raise RegistryError(agent.name, "name", "duplicate agent name")
        registry[agent.name] = agent
    return MappingProxyType(registry)


AGENTS: Mapping[str, Agent] = build_registry(
    [
        Agent(name="claude", image="claude", command=("claude",), secret="anthropic"),
        Agent(name="codex", image="codex", command=("codex",), secret="openai"),
        Agent(name="gemini", image="gemini", command=("gemini",), secret="google"),
        # aider installs its own optional extras with pip when a feature asks for one (and the
        # adapter's --yes-always accepts), whatever the environment's allowlist says of PyPI.
        Agent(
            name="aider",
            image="aider",
            command=("aider",),
            secret="openai",
            memory=4096,
            egress=("pypi.org", "files.pythonhosted.org"),
        ),
        Agent(name="grok", image="grok", command=("grok",), secret="xai"),
        Agent(
            name="shell",
            image="base",
            command=("sh", "-c"),
            secret=None,
            cpu=512,
            memory=1024,
            default_timeout_s=600,
            max_timeout_s=3600,
            warm_pool={"dev": 1, "staging": 1, "prod": 2},
        ),
    ]
)

# The seven ECR repositories: every agent image plus the base and the control plane.
IMAGE_REPOSITORIES = ("base", "claude", "codex", "gemini", "aider", "grok", "control-plane")
