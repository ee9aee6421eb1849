"""Typed, frozen per-environment configuration.

The raw settings live in cdk.json under the context key ``outpost:environments`` and are
checked here once; ``-c env=NAME`` selects environments and ``-c image_tag=SHA`` picks the
image tag the task definitions use. Stacks receive an ``EnvironmentConfig``;
constructs receive only the values they need. Environment variables are read only in app.py.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from types import MappingProxyType
from typing import Any

from agents.agent_settings import AgentSettings, AgentSettingsError, parse_agent_settings
from agents.egress import pattern_problem
from agents.errors import SettingError
from agents.registry import AGENTS

AZ_COUNT = 2  # the VPC spans two availability zones

ENVIRONMENTS = ("dev", "staging", "prod")
CONTEXT_KEY = "outpost:environments"

# The retention periods CloudWatch Logs accepts (PutRetentionPolicy).
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
NAT_KINDS = ("gateway", "instance")
# AWS's managed prefix lists of S3's addresses (com.amazonaws.<region>.s3), one id per region,
# the same in every account; other regions: s3_prefix_list in cdk.json.
S3_PREFIX_LISTS = {"us-east-1": "pl-63a5400a", "eu-west-1": "pl-6da54004"}
MAX_WARM_POOL = 50  # the engine's max_tasks_per_agent
# Fargate control-plane sizes we allow (cpu units -> memory MiB).
CONTROL_PLANE_SIZES = {256: (512, 1024, 2048), 512: (1024, 2048, 3072, 4096), 1024: (2048, 3072, 4096, 8192)}


class ConfigError(SettingError):
    """An invalid setting; the message is one line naming the environment, field and value."""

    def __init__(self, env: str, field_name: str, value: Any, problem: str) -> None:
        super().__init__(f"config: environment '{env}', field '{field_name}' = {value!r}: {problem}")


@dataclass(frozen=True)
class AlarmThresholds:
    """When the alarms of stacks/observability.py fire (docs/runbook.md: what each means).

    cdk.json may set any of them per environment under "alarms"; each is a non-negative integer.
    Counts are per 5 minutes unless the name says otherwise.
    """

    api_5xx: int = 5  # 5xx answers of the control plane (its targets, or the load balancer)
    api_latency_p90_ms: int = 2000  # for 15 minutes
    queue_depth: int = 100  # messages waiting in a queue, for 5 minutes
    queue_age_s: int = 300  # the oldest message in a queue
    agent_cpu_percent: int = 80  # an agent's busiest task, for 5 minutes
    agent_memory_percent: int = 85  # an agent's busiest task, for 5 minutes
    task_failures: int = 3  # per agent
    launch_failures: int = 0  # per agent
    claim_failures: int = 3  # per agent
    reconciler_failures: int = 0  # per agent
    dead_lettered: int = 0  # per agent
    queue_wait_p90_s: int = 120  # dispatch to RUNNING, per agent, for 15 minutes
    warm_pool_hit_rate_percent: int = 50  # floor, per agent with a warm pool, per hour
    nat_packets_dropped: int = 100  # per NAT gateway
    efs_io_limit_percent: int = 80  # bursting file systems only
    efs_burst_credit_gib: int = 100  # floor; bursting file systems only
    s3_4xx: int = 50  # artifacts bucket
    s3_5xx: int = 5  # artifacts bucket
    dynamodb_throttles: int = 0  # read or write throttle events, per table
    waf_blocked: int = 100  # requests the web ACL blocked


@dataclass(frozen=True)
class GitHubConfig:
    """Where dispatches may publish (docs/publishing.md), and the secret the control plane signs with.

    The secret is created by the operator, never by the stack, so that a forgotten value is a
    deploy-time error rather than a credential that fails on first use: with ``app_id`` it holds
    the GitHub App's private key (PEM), without it a token with push access.
    """

    secret_name: str
    url: str = "https://github.com"
    api_url: str = "https://api.github.com"
    app_id: str | None = None


_SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")


def _github(env: str, raw: Any) -> GitHubConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(env, "github", raw, "must be a mapping with secret_name, url, api_url, app_id")
    known = {f.name for f in fields(GitHubConfig)}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(
                env, f"github.{key}", value, f"unknown setting; known: {', '.join(sorted(known))}"
            )
        if not isinstance(value, str):
            raise ConfigError(env, f"github.{key}", value, "must be a string")
    if not _SECRET_NAME.fullmatch(raw.get("secret_name", "")):
        raise ConfigError(env, "github.secret_name", raw.get("secret_name"), "a Secrets Manager secret name")
    for key in ("url", "api_url"):
        if key in raw and not re.fullmatch(r"https://[^/\s?#@]+(/[^\s?#]*)?", raw[key]):
            raise ConfigError(env, f"github.{key}", raw[key], "must be an https:// URL without query")
    if "app_id" in raw and not raw["app_id"].isdigit():
        raise ConfigError(env, "github.app_id", raw["app_id"], "the GitHub App's numeric id")
    return GitHubConfig(**raw)


@dataclass(frozen=True)
class EnvironmentConfig:
    name: str
    region: str
    nat_gateways: int
    log_retention_days: int
    retain_data: bool  # RETAIN stateful resources and protect the stacks from deletion
    immutable_tags: bool
    customer_managed_table_key: bool
    interface_endpoints: bool
    agents: tuple[str, ...]
    account: str | None = None  # None: environment-agnostic (dev without CDK_DEFAULT_ACCOUNT)
    control_plane_cpu: int = 512
    control_plane_memory: int = 1024
    control_plane_desired_count: int = 1
    control_plane_max_count: int = 1  # autoscaling is on when max > desired
    ingress_cidrs: tuple[str, ...] = ("10.0.0.0/8",)
    # The hosts agent tasks may reach besides the control plane (git hosts, package registries):
    # host names or *.wildcards (agents/egress.py), plus each agent's own additions in
    # agents/registry.py. Enforced by DNS Firewall; repository URLs must be on it (docs/egress.md).
    egress_allowlist: tuple[str, ...] = ()
    # The egress proxy (docs/egress.md): agent tasks lose every internet rule and reach allowlisted
    # hosts only through it, which stops connections to literal addresses that DNS Firewall can't.
    # Fargate then pulls images and ships logs through the interface endpoints, so it needs
    # interface_endpoints; and S3 (image layers, artifact uploads) through the gateway endpoint,
    # named in security groups by the region's S3 prefix list (stacks/egress.py knows some
    # regions'; s3_prefix_list names it for others).
    egress_proxy: bool = False
    s3_prefix_list: str | None = None
    certificate_arn: str | None = None
    image_tag: str = "latest"
    alarm_email: str | None = None  # subscribed to the alarm topic; None: nobody is paged (synth warns)
    alarms: AlarmThresholds = AlarmThresholds()
    github: GitHubConfig | None = None  # None: dispatches cannot publish branches or pull requests
    # per agent: default and allowed models, provider base URL, extra non-secret variables
    # (agents/agent_settings.py); cdk.json holds their JSON form
    agent_settings: Mapping[str, AgentSettings] = field(default_factory=lambda: MappingProxyType({}))
    # What an idle stage pays for (README, Cost; stacks/cost.py prices each): "gateway" (a
    # managed NAT gateway per nat_gateways) or "instance" (a t4g.nano NAT instance each, no
    # per-GB fee, no redundancy); per-agent warm-pool sizes replacing agents/registry.py's for
    # this environment; Container Insights on the cluster; the WAF web ACL on the load
    # balancer; the Observability stack (dashboards, alarms, their topic); an internal load
    # balancer (no public addresses: clients reach it from the VPC or a network joined to it).
    nat: str = "gateway"
    warm_pool: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    container_insights: bool = True
    waf: bool = True
    observability: bool = True
    internal_load_balancer: bool = False
    # "owner/name": the GitHub repository whose workflows may assume this stage's CI roles
    # (stacks/ci.py, .github/workflows); None: the stage has no CI stack
    ci_repository: str | None = None
    # the account's GitHub OIDC provider when it already has one; None: the CI stack creates it
    ci_oidc_provider_arn: str | None = None

    @property
    def stage_name(self) -> str:
        return self.name.capitalize()

    @property
    def task_events_rule_name(self) -> str:
        # A physical name by design: the data stack admits this rule to its queue and key by ARN
        # before the fleet stack creates it, without a reference cycle between the two.
        return f"outpost-{self.name}-task-state-change"

    @property
    def autoscaling(self) -> bool:
        return self.control_plane_max_count > self.control_plane_desired_count

    def warm_pool_size(self, agent: str) -> int:
        """The agent's warm-pool target here: cdk.json's warm_pool, else agents/registry.py's."""
        return self.warm_pool.get(agent, AGENTS[agent].warm_pool.get(self.name, 0))


def _check(cfg: EnvironmentConfig) -> None:
    def fail(field_name: str, problem: str) -> None:
        raise ConfigError(cfg.name, field_name, getattr(cfg, field_name), problem)

    if cfg.account is not None and not re.fullmatch(r"\d{12}", cfg.account):
        fail("account", "an AWS account id is 12 digits")
    if not re.fullmatch(r"[a-z]{2}(-gov)?-[a-z]+-\d", cfg.region):
        fail("region", "not an AWS region name")
    # Agents need egress (git hosts, package registries), so at least one NAT gateway.
    if not 1 <= cfg.nat_gateways <= AZ_COUNT:
        fail("nat_gateways", f"must be between 1 and {AZ_COUNT} (one per availability zone)")
    if cfg.nat not in NAT_KINDS:
        fail("nat", f"must be one of {', '.join(NAT_KINDS)}")
    if cfg.log_retention_days not in LOG_RETENTION_DAYS:
        fail("log_retention_days", "CloudWatch Logs does not accept this retention")
    unknown = sorted(set(cfg.agents) - set(AGENTS))
    if unknown or not cfg.agents:
        fail("agents", f"unknown agents {unknown}" if unknown else "at least one agent is required")
    if sorted(set(cfg.warm_pool) - set(cfg.agents)):
        fail(
            "warm_pool",
            f"names agents this environment does not deploy: {sorted(set(cfg.warm_pool) - set(cfg.agents))}",
        )
    if cfg.control_plane_memory not in CONTROL_PLANE_SIZES.get(cfg.control_plane_cpu, ()):
        fail("control_plane_memory", f"not a Fargate size with control_plane_cpu {cfg.control_plane_cpu}")
    if not 1 <= cfg.control_plane_desired_count <= cfg.control_plane_max_count:
        fail("control_plane_max_count", "need 1 <= control_plane_desired_count <= control_plane_max_count")
    for cidr in cfg.ingress_cidrs:
        try:
            ipaddress.ip_network(cidr)
        except ValueError:
            fail("ingress_cidrs", f"{cidr!r} is not a CIDR block")
    for pattern in cfg.egress_allowlist:
        if (problem := pattern_problem(pattern)) is not None:
            fail("egress_allowlist", f"{pattern!r}: {problem}")
    if len(set(cfg.egress_allowlist)) != len(cfg.egress_allowlist):
        fail("egress_allowlist", "lists a host twice")
    if cfg.egress_proxy and not cfg.interface_endpoints:
        fail(
            "egress_proxy",
            "needs interface_endpoints: true (without internet rules, Fargate pulls agent images and "
            "ships their logs through the ECR and CloudWatch Logs endpoints)",
        )
    if cfg.s3_prefix_list is not None and not re.fullmatch(r"pl-[0-9a-f]{8,17}", cfg.s3_prefix_list):
        fail("s3_prefix_list", "a prefix list id (pl-...): aws ec2 describe-managed-prefix-lists")
    if cfg.egress_proxy and cfg.s3_prefix_list is None and cfg.region not in S3_PREFIX_LISTS:
        fail(
            "egress_proxy",
            f"set s3_prefix_list to {cfg.region}'s S3 prefix list id: aws ec2 describe-managed-prefix-lists "
            f"--region {cfg.region} --filters Name=prefix-list-name,Values=com.amazonaws.{cfg.region}.s3",
        )
    if cfg.certificate_arn is not None and not cfg.certificate_arn.startswith("arn:aws:acm:"):
        fail("certificate_arn", "not an ACM certificate ARN")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", cfg.image_tag):
        fail("image_tag", "not a valid image tag")
    if cfg.alarm_email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", cfg.alarm_email):
        fail("alarm_email", "not an e-mail address")
    if cfg.ci_repository is not None and not re.fullmatch(
        r"[A-Za-z0-9-]{1,39}/[A-Za-z0-9._-]{1,100}", cfg.ci_repository
    ):
        fail("ci_repository", "a GitHub repository as owner/name")
    if cfg.ci_oidc_provider_arn is not None and not re.fullmatch(
        r"arn:aws:iam::\d{12}:oidc-provider/token\.actions\.githubusercontent\.com", cfg.ci_oidc_provider_arn
    ):
        fail("ci_oidc_provider_arn", "the ARN of the account's token.actions.githubusercontent.com provider")


def _warm_pool(env: str, raw: Any) -> Mapping[str, int]:
    if not isinstance(raw, Mapping):
        raise ConfigError(env, "warm_pool", raw, "must be a mapping of agent names to pool sizes")
    for agent, size in raw.items():
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_WARM_POOL:
            raise ConfigError(
                env, f"warm_pool.{agent}", size, f"must be an integer from 0 to {MAX_WARM_POOL}"
            )
    return MappingProxyType(dict(raw))


def _alarm_thresholds(env: str, raw: Any) -> AlarmThresholds:
    if not isinstance(raw, Mapping):
        raise ConfigError(env, "alarms", raw, "must be a mapping of threshold names to integers")
    known = {f.name for f in fields(AlarmThresholds)}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(
                env, f"alarms.{key}", value, f"unknown threshold; known: {', '.join(sorted(known))}"
            )
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(env, f"alarms.{key}", value, "must be a non-negative integer")
        if key.endswith("_percent") and value > 100:
            raise ConfigError(env, f"alarms.{key}", value, "a percentage is at most 100")
    return AlarmThresholds(**raw)


def _coerce(env: str, raw: Mapping[str, Any]) -> EnvironmentConfig:
    known = {f.name: f for f in fields(EnvironmentConfig)}
    for key in raw:
        if key not in known or key == "name":
            raise ConfigError(env, key, raw[key], "unknown setting")
    values: dict[str, Any] = {"name": env}
    for name, spec in known.items():
        if name == "name":
            continue
        if name not in raw:
            if spec.default is MISSING and spec.default_factory is MISSING:
                raise ConfigError(env, name, None, "required setting is missing")
            continue
        value = raw[name]
        expected = str(spec.type)
        if name == "agent_settings":
            try:
                value = parse_agent_settings(value, agents=raw.get("agents") or ())
            except AgentSettingsError as error:
                shown = value.get(error.agent) if isinstance(value, Mapping) else value
                raise ConfigError(
                    env, f"agent_settings.{error.agent}.{error.field_name}", shown, error.problem
                ) from None
        elif name == "alarms":
            value = _alarm_thresholds(env, value)
        elif name == "warm_pool":
            value = _warm_pool(env, value)
        elif name == "github":
            value = None if value is None else _github(env, value)
        elif "tuple" in expected:
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigError(env, name, value, "must be a list of strings")
            value = tuple(value)
        elif expected.startswith("int"):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(env, name, value, "must be an integer")
        elif expected.startswith("bool"):
            if not isinstance(value, bool):
                raise ConfigError(env, name, value, "must be true or false")
        elif value is not None and not isinstance(value, str):
            raise ConfigError(env, name, value, "must be a string")
        values[name] = value
    cfg = EnvironmentConfig(**values)
    _check(cfg)
    return cfg


def load_environments(
    raw: Mapping[str, Any],
    *,
    selected: str | None = None,
    default_account: str | None = None,
    default_region: str | None = None,
    image_tag: str | None = None,
) -> list[EnvironmentConfig]:
    """Checks the raw settings and returns the selected environments (all when none)."""
    names: Sequence[str] = ENVIRONMENTS
    if selected:
        names = [n.strip() for n in selected.split(",")]
        for name in names:
            if name not in ENVIRONMENTS:
                raise ConfigError(name, "env", name, f"unknown environment; known: {', '.join(ENVIRONMENTS)}")
    configs = []
    for name in names:
        settings = dict(raw.get(name) or {})
        if not settings:
            raise ConfigError(name, CONTEXT_KEY, None, "no settings for this environment in cdk.json")
        if name == "dev":  # only dev may fall back to the CLI's account and region
            if settings.get("account") is None:
                settings["account"] = default_account
            settings.setdefault("region", default_region)
        if image_tag:  # `-c image_tag=<git sha>`: the images this deploy runs
            settings["image_tag"] = image_tag
        configs.append(_coerce(name, settings))
    return configs
