"""One Stage per environment: the stacks of Outpost, wired together."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk

from constructs import Construct
from stacks.audit import AuditStack
from stacks.ci import CiStack
from stacks.config import EnvironmentConfig
from stacks.data import DataStack
from stacks.fleet import FleetStack
from stacks.network import NetworkStack
from stacks.observability import ObservabilityStack
from stacks.registry import RegistryStack


class OutpostStage(cdk.Stage):
    def __init__(self, scope: Construct, *, config: EnvironmentConfig) -> None:
        super().__init__(
            scope, config.stage_name, env=cdk.Environment(account=config.account, region=config.region)
        )
        self.config = config
        common: dict[str, Any] = {
            "config": config,
            "termination_protection": config.retain_data,
            "tags": {"outpost:environment": config.name},
        }
        self.network = NetworkStack(self, "Network", description="Outpost network", **common)
        self.data = DataStack(
            self, "Data", vpc=self.network.vpc, description="Outpost stateful resources", **common
        )
        self.registry = RegistryStack(self, "Registry", description="Outpost image repositories", **common)
        self.fleet = FleetStack(
            self,
            "Fleet",
            vpc=self.network.vpc,
            logs_key=self.network.logs_key,
            data=self.data,
            repositories=self.registry.repositories,
            task_endpoints=self.network.network.task_endpoints_security_group,
            secrets_endpoint=self.network.network.secrets_endpoint_security_group,
            description="Outpost cluster, agent tasks and control plane",
            **common,
        )
        self.audit = AuditStack(
            self,
            "Audit",
            access_logs_bucket=self.data.access_logs.bucket,
            description="Outpost audit trail",
            **common,
        )
        self.observability: ObservabilityStack | None = None
        if config.observability:  # off only for a cheaper stage (README, Cost)
            self.observability = ObservabilityStack(
                self,
                "Observability",
                network=self.network,
                data=self.data,
                fleet=self.fleet,
                description="Outpost dashboards, alarms and their topic",
                **common,
            )
        self.ci: CiStack | None = None
        if config.ci_repository is not None:  # deployed once by an administrator (stacks/ci.py)
            self.ci = CiStack(
                self,
                "Ci",
                repositories=self.registry.repositories,
                description="Outpost roles for GitHub workflows (OIDC)",
                **common,
            )
