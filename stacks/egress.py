"""What agent tasks may reach, and what the VPC may resolve (docs/egress.md).

Agent tasks reach the internet on port 443 only outside the VPC's own addresses (security
groups), and only names on the VPC's DNS Firewall list resolve. That list serves the whole
VPC (DNS Firewall is associated per VPC, not per task), so besides the agents' hosts it holds
what the control plane and Fargate resolve for them: the AWS APIs and this account's image
registry, the buckets, the model APIs the gateway calls, the operator's GitHub.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from agents.egress import PROXY_VARIABLES, merged
from agents.endpoints import gateway_route
from agents.registry import AGENTS
from control_plane.gateway.providers import PROVIDERS
from stacks.config import S3_PREFIX_LISTS, EnvironmentConfig

# The egress proxy's listeners: one port per agent of the registry, in its order, so a port
# never changes meaning when an environment deploys fewer agents.
PROXY_BASE_PORT = 3128


def proxy_port(agent: str) -> int:
    return PROXY_BASE_PORT + list(AGENTS).index(agent)


def agent_allowlist(config: EnvironmentConfig, agent: str) -> tuple[str, ...]:
    """What one agent's tasks may reach: every agent's hosts and the agent's own additions, from
    the registry and from this environment's agent_settings."""
    settings = config.agent_settings.get(agent)
    return merged(agent_hosts(config), AGENTS[agent].egress, settings.egress if settings else ())


def s3_prefix_list(config: EnvironmentConfig) -> str:
    """The region's S3 prefix list: cdk.json's s3_prefix_list, else AWS's id for the region."""
    return config.s3_prefix_list or S3_PREFIX_LISTS[config.region]


def proxy_environment(proxy_url: str, *, region: str, internal_domain: str) -> dict[str, str]:
    """An agent task's variables that send HTTPS through its egress proxy listener.

    Only HTTPS goes to the proxy: the control plane (claims, the model gateway) is plain HTTP
    inside the VPC, and S3 (artifact uploads by presigned URL) is reached directly through the
    gateway endpoint, so those hosts bypass it. Both spellings: curl and git read the lower-case
    names, other clients the upper-case ones. Each domain twice: most clients take ``domain`` to
    cover its subdomains, but undici (Node's fetch, Gemini CLI) matches it as that host only and
    needs ``.domain`` for them (the runner also adds the gateway's exact host,
    agents/runner/model_access.py).
    """
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    domains = [internal_domain, f"s3.{region}.{suffix}", *([f"s3.{suffix}"] if region == "us-east-1" else [])]
    bypass = ",".join(entry for domain in domains for entry in (domain, f".{domain}"))
    return dict(zip(PROXY_VARIABLES, (proxy_url, proxy_url, bypass, bypass), strict=True))


# The regional AWS APIs the VPC calls: Fargate (ECR, logs) for every task, the control plane
# (tables, queues, tasks, provider keys, artifacts) for itself.
AWS_SERVICES = ("api.ecr", "logs", "dynamodb", "sqs", "ecs", "secretsmanager", "s3")


def agent_hosts(config: EnvironmentConfig) -> tuple[str, ...]:
    """What every agent task may reach: the allowlist and the GitHub dispatches publish to (the
    runner pushes there). The control plane adds each agent's own additions from the registry."""
    github = [urlsplit(config.github.url).hostname or ""] if config.github else []
    return merged(config.egress_allowlist, github)


def resolvable_names(
    config: EnvironmentConfig,
    *,
    region: str,
    account: str,
    url_suffix: str,
    buckets: Sequence[str],
    internal_domain: str,
) -> list[str]:
    """Every name the VPC may resolve: DNS Firewall answers NXDOMAIN for any other."""
    aws = [f"{service}.{region}.{url_suffix}" for service in AWS_SERVICES]
    # this account's buckets, and ECR's own, where Fargate fetches image layers
    named = [*buckets, f"prod-{region}-starport-layer-bucket"]
    s3 = [f"{bucket}.s3.{region}.{url_suffix}" for bucket in named]
    if region == "us-east-1":  # the S3 clients' default there is the global name
        s3 += [f"s3.{url_suffix}", *(f"{bucket}.s3.{url_suffix}" for bucket in named)]
    # the model APIs the gateway calls: each agent's provider, or the operator's base_url for it
    models = [
        urlsplit(PROVIDERS[route].root).hostname or ""
        for name in config.agents
        if (route := gateway_route(name))
    ]
    models += [
        host
        for settings in config.agent_settings.values()
        if settings.base_url and (host := urlsplit(settings.base_url).hostname)
    ]
    github = [urlsplit(config.github.api_url).hostname or ""] if config.github else []
    # the VPC's own host names (a task's hostname, which git looks up), answered by its resolver
    vpc_names = "*.ec2.internal" if region == "us-east-1" else f"*.{region}.compute.internal"
    platform = [f"*.{internal_domain}", vpc_names, f"{account}.dkr.ecr.{region}.{url_suffix}", *aws, *s3]
    return list(
        merged(
            *(agent_allowlist(config, name) for name in config.agents),
            platform,
            models,
            github,
        )
    )


def outside_of(cidr: str) -> list[str]:
    """The IPv4 blocks that together cover every address outside ``cidr`` (16 for a /16)."""
    inside = ipaddress.IPv4Network(cidr)
    return [str(block) for block in sorted(ipaddress.IPv4Network("0.0.0.0/0").address_exclude(inside))]
