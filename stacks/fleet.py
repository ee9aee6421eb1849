"""Fleet stack, the compute side: the cluster, one hardened task per agent, the control plane."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_servicediscovery as servicediscovery

from agents.agent_settings import agent_environment, settings_json
from agents.registry import AGENTS
from constructs import Construct
from constructs.agent_task import AgentTask
from constructs.control_plane_service import CLOUD_MAP_NAME, PORT, ControlPlaneService
from constructs.dns_firewall import DnsFirewall
from constructs.egress_proxy import CLOUD_MAP_NAME as EGRESS_PROXY_NAME
from constructs.egress_proxy import EgressProxy
from constructs.network import VPC_CIDR
from constructs.task_events import TaskEvents
from control_plane.schema import TABLES
from stacks.config import EnvironmentConfig
from stacks.data import DataStack
from stacks.egress import (
    agent_allowlist,
    agent_hosts,
    outside_of,
    proxy_environment,
    proxy_port,
    resolvable_names,
    s3_prefix_list,
)
from stacks.policies import acknowledge, log_retention, removal_policy

NAMESPACE = "outpost.internal"


class FleetStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: EnvironmentConfig,
        vpc: ec2.IVpc,
        logs_key: kms.IKey,
        data: DataStack,
        repositories: Mapping[str, ecr.IRepository],
        task_endpoints: ec2.ISecurityGroup | None = None,
        secrets_endpoint: ec2.ISecurityGroup | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        self._imported_secrets: dict[str, secretsmanager.ISecret] = {}
        removal = removal_policy(config)
        retention = log_retention(config)
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=vpc,
            container_insights_v2=(
                ecs.ContainerInsights.ENABLED if config.container_insights else ecs.ContainerInsights.DISABLED
            ),
            enable_fargate_capacity_providers=True,
            default_cloud_map_namespace=ecs.CloudMapNamespaceOptions(
                name=NAMESPACE, vpc=vpc, type=servicediscovery.NamespaceType.DNS_PRIVATE
            ),
        )
        # Every execution role needs this one action, which IAM offers only on "*".
        self.ecr_auth_policy = iam.ManagedPolicy(
            self,
            "EcrAuthorization",
            statements=[iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"])],
        )

        # Agent egress (docs/egress.md). With the egress proxy: the proxy (each agent its own
        # listener), S3 through its gateway endpoint, the control plane and the endpoints a task
        # needs to start, nothing else. Without it: HTTPS to any address outside the VPC, where
        # DNS Firewall lets only the allowlisted names resolve.
        # One security group per agent (the control plane starts each agent's tasks in its own,
        # OUTPOST_AGENT_SECURITY_GROUPS): a group reaches only its agent's proxy listener, so a
        # task of one agent cannot use another agent's allowlist.
        self.agent_security_groups = {
            name: ec2.SecurityGroup(
                self,
                f"AgentSecurityGroup{name.capitalize()}",
                vpc=vpc,
                description=f"Outpost {name} agent tasks",
                allow_all_outbound=False,
            )
            for name in config.agents
        }
        self.egress_proxy: EgressProxy | None = None
        if config.egress_proxy:
            self.egress_proxy = EgressProxy(
                self,
                "EgressProxy",
                cluster=self.cluster,
                repository=repositories["control-plane"],
                image_tag=config.image_tag,
                listeners={name: (proxy_port(name), agent_allowlist(config, name)) for name in config.agents},
                vpc_cidr=VPC_CIDR,
                outside_vpc=outside_of(VPC_CIDR),
                desired_count=config.nat_gateways,  # one per zone with a way out
                ecr_auth_policy=self.ecr_auth_policy,
                log_retention=retention,
                logs_key=logs_key,
                removal_policy=removal,
            )
            for name, group in self.agent_security_groups.items():
                self.egress_proxy.admit(name, group)
                group.add_egress_rule(
                    ec2.Peer.prefix_list(s3_prefix_list(config)),
                    ec2.Port.tcp(443),
                    "S3 through its gateway endpoint: image layers, artifact uploads",
                )
        else:
            for group in self.agent_security_groups.values():
                for cidr in outside_of(VPC_CIDR):
                    group.add_egress_rule(
                        ec2.Peer.ipv4(cidr),
                        ec2.Port.tcp(443),
                        "HTTPS outside the VPC: allowlisted names only",
                    )
        # Nothing mounts the workspaces file system: an agent's workspace is task-local storage,
        # private to its task (constructs/agent_task.py), so no security group reaches NFS.

        self.agents = {
            name: AgentTask(
                self,
                f"Agent{name.capitalize()}",
                agent=AGENTS[name],
                repository=repositories[AGENTS[name].image],
                image_tag=config.image_tag,
                ecr_auth_policy=self.ecr_auth_policy,
                log_retention=retention,
                logs_key=logs_key,
                removal_policy=removal,
                environment={
                    **agent_environment(config.agent_settings.get(name)),
                    **self._proxy_environment(name, config.region),
                },
            )
            for name in config.agents
        }

        self.control_plane = ControlPlaneService(
            self,
            "ControlPlane",
            cluster=self.cluster,
            repository=repositories["control-plane"],
            image_tag=config.image_tag,
            cpu=config.control_plane_cpu,
            memory=config.control_plane_memory,
            desired_count=config.control_plane_desired_count,
            max_count=config.control_plane_max_count,
            environment=self._control_plane_environment(config, data),
            admin_secret=self._secret(data, "admin"),
            operator_secrets=self._github_secrets(config),
            secret_key=data.key,
            task_statements=self._control_plane_statements(config, data),
            ecr_auth_policy=self.ecr_auth_policy,
            task_managed_policies=[data.artifacts_policy],
            ingress_cidrs=list(config.ingress_cidrs),
            certificate_arn=config.certificate_arn,
            web_acl=config.waf,
            internet_facing=not config.internal_load_balancer,
            access_logs_bucket=data.access_logs.bucket,
            log_retention=retention,
            logs_key=logs_key,
            removal_policy=removal,
        )
        control_plane_sg = self.control_plane.security_group
        # Runners call the claim protocol, and agents the model gateway, on the service port.
        for name, group in self.agent_security_groups.items():
            group.add_egress_rule(control_plane_sg, ec2.Port.tcp(PORT), "claim protocol, model gateway")
            control_plane_sg.add_ingress_rule(group, ec2.Port.tcp(PORT), f"{name} runners")
        self._endpoint_rules(task_endpoints, secrets_endpoint)
        self.dns_firewall = DnsFirewall(
            self,
            "DnsFirewall",
            vpc=vpc,
            allowed_domains=resolvable_names(
                config,
                region=self.region,
                account=self.account,
                url_suffix=self.url_suffix,
                buckets=[data.artifacts_bucket.bucket_name],
                internal_domain=NAMESPACE,
            ),
        )

        self._api_url_output(config)

        TaskEvents(
            self,
            "TaskEvents",
            rule_name=config.task_events_rule_name,
            cluster=self.cluster,
            queue_arn=data.task_events_queue.queue_arn,
            queue_url=data.task_events_queue.queue_url,
        )
        self._acknowledge(config)

    def _proxy_environment(self, agent: str, region: str) -> dict[str, str]:
        if self.egress_proxy is None:
            return {}
        return proxy_environment(
            f"http://{EGRESS_PROXY_NAME}.{NAMESPACE}:{self.egress_proxy.ports[agent]}",
            region=region,
            internal_domain=NAMESPACE,
        )

    def _endpoint_rules(
        self, task_endpoints: ec2.ISecurityGroup | None, secrets_endpoint: ec2.ISecurityGroup | None
    ) -> None:
        """Who reaches the interface endpoints (the network stack admits nobody by itself).

        Fargate pulls a task's image and ships its logs through the task's own network interface,
        so agent tasks reach the ECR and logs endpoints; no agent task reads a secret, so only
        the control plane reaches Secrets Manager. The rules live here, beside the groups they
        name, so that the network stack never refers to this one.
        """
        control_plane_sg = self.control_plane.security_group
        if task_endpoints is not None:
            peers: list[tuple[ec2.ISecurityGroup, str]] = [(control_plane_sg, "control plane")]
            for name, group in self.agent_security_groups.items():
                group.add_egress_rule(task_endpoints, ec2.Port.tcp(443), "image pulls and logs (endpoints)")
                peers.append((group, f"{name} tasks"))
            if self.egress_proxy is not None:
                # its own image and logs: the endpoints' private names resolve inside the VPC
                proxy_sg = self.egress_proxy.security_group
                proxy_sg.add_egress_rule(
                    task_endpoints, ec2.Port.tcp(443), "image pulls and logs (endpoints)"
                )
                peers.append((proxy_sg, "egress proxy"))
            for peer, what in peers:
                task_endpoints.add_ingress_rule(peer, ec2.Port.tcp(443), what, remote_rule=True)
        if secrets_endpoint is not None:
            secrets_endpoint.add_ingress_rule(
                control_plane_sg, ec2.Port.tcp(443), "control plane", remote_rule=True
            )

    def _api_url_output(self, config: EnvironmentConfig) -> None:
        dns_name = self.control_plane.load_balancer.load_balancer_dns_name
        if config.certificate_arn:
            url, reach = f"https://{dns_name}", "use the certificate's DNS name, pointed (CNAME) at this host"
        else:
            cidrs = ", ".join(config.ingress_cidrs)
            url, reach = f"http://{dns_name}", f"admits only {cidrs} (ingress_cidrs in cdk.json)"
        cdk.CfnOutput(
            self, "ApiUrl", value=url, description=f"The control plane's API (OUTPOST_URL); {reach}"
        )

    def _github_secrets(self, config: EnvironmentConfig) -> dict[str, secretsmanager.ISecret]:
        """The operator's GitHub secret, under the variable the control plane reads it from."""
        if config.github is None:
            return {}
        secret = secretsmanager.Secret.from_secret_name_v2(self, "SecretGithub", config.github.secret_name)
        variable = "OUTPOST_GITHUB_APP_PRIVATE_KEY" if config.github.app_id else "OUTPOST_GITHUB_TOKEN"
        return {variable: secret}

    def _secret(self, data: DataStack, name: str) -> secretsmanager.ISecret:
        """A data-stack secret referenced by ARN: the roles' own policies grant the read, so no
        grant reaches back into the data stack's key policy (which would be a cycle)."""
        id = f"Secret{name.capitalize()}"
        if id not in self._imported_secrets:  # two agents may share a provider
            self._imported_secrets[id] = secretsmanager.Secret.from_secret_complete_arn(
                self, id, data.secrets.secrets[name].secret_arn
            )
        return self._imported_secrets[id]

    @staticmethod
    def _github_environment(config: EnvironmentConfig) -> dict[str, str]:
        github = config.github
        if github is None:
            return {}
        environment = {"OUTPOST_GITHUB_URL": github.url, "OUTPOST_GITHUB_API_URL": github.api_url}
        if github.app_id:
            environment["OUTPOST_GITHUB_APP_ID"] = github.app_id
        return environment

    def _control_plane_environment(self, config: EnvironmentConfig, data: DataStack) -> dict[str, str]:
        """The generated names the service reads (control_plane/settings.py, docs/design.md)."""
        private = [subnet.subnet_id for subnet in self.cluster.vpc.private_subnets]
        environment = {
            "OUTPOST_ENV": config.name,
            "OUTPOST_REGION": self.region,
            "OUTPOST_ARTIFACTS_BUCKET": data.artifacts_bucket.bucket_name,
            "OUTPOST_DISPATCH_QUEUE_URLS": self.to_json_string(
                {agent: queue.queue_url for agent, queue in data.dispatch_queues.items()}
            ),
            "OUTPOST_TASK_EVENTS_QUEUE_URL": data.task_events_queue.queue_url,
            "OUTPOST_DEAD_LETTER_QUEUE_URL": data.dead_letter_queue.queue_url,
            "OUTPOST_RUNTIME": "ecs",
            "OUTPOST_CLUSTER_ARN": self.cluster.cluster_arn,
            "OUTPOST_TASK_DEFINITIONS": self.to_json_string(
                {name: task.task_definition.task_definition_arn for name, task in self.agents.items()}
            ),
            "OUTPOST_SUBNETS": self.to_json_string(private),
            # each agent's own security group, which RunTask starts its tasks in
            "OUTPOST_AGENT_SECURITY_GROUPS": self.to_json_string(
                {name: group.security_group_id for name, group in self.agent_security_groups.items()}
            ),
            "OUTPOST_INTERNAL_URL": f"http://{CLOUD_MAP_NAME}.{NAMESPACE}:{PORT}",
            # the hosts a dispatch's repository may be on (control_plane/api/repos.py)
            "OUTPOST_EGRESS_ALLOWLIST": json.dumps(list(agent_hosts(config))),
            # the provider keys' secrets: POST /dispatch checks that each holds a value
            # (runtime/provider_keys.py), the model gateway reads them (agents never do)
            "OUTPOST_AGENT_SECRETS": self.to_json_string(self._agent_secret_arns(config, data)),
            # what POST /dispatch checks a requested model against (agents/agent_settings.py)
            "OUTPOST_AGENT_SETTINGS": json.dumps(settings_json(config.agent_settings), sort_keys=True),
            **self._github_environment(config),
            **self._warm_pool_environment(config),
        }
        for schema in TABLES:
            environment[f"OUTPOST_{schema.settings_field.upper()}"] = data.tables[schema.id].table_name
        return environment

    @staticmethod
    def _warm_pool_environment(config: EnvironmentConfig) -> dict[str, str]:
        """cdk.json's warm_pool, which replaces the registry's sizes in the engine (EngineSettings)."""
        if not config.warm_pool:
            return {}
        return {"OUTPOST_WARM_POOL": json.dumps(dict(sorted(config.warm_pool.items())))}

    def _agent_secret_arns(self, config: EnvironmentConfig, data: DataStack) -> dict[str, str]:
        """Each deployed agent's provider-key secret (agents without one, like shell, have none)."""
        return {
            name: self._secret(data, provider).secret_arn
            for name in config.agents
            if (provider := AGENTS[name].secret)
        }

    def _control_plane_statements(
        self, config: EnvironmentConfig, data: DataStack
    ) -> list[iam.PolicyStatement]:
        """Least privilege for the only component that holds AWS data permissions."""
        table_arns = [
            arn
            for schema in TABLES
            for arn in (
                data.tables[schema.id].table_arn,
                *(f"{data.tables[schema.id].table_arn}/index/{index.name}" for index in schema.indexes),
            )
        ]
        # the DLQ too: the reconciler fails the dispatches whose messages were dead-lettered
        queues = [*data.dispatch_queues.values(), data.task_events_queue, data.dead_letter_queue]
        cluster_arn = self.cluster.cluster_arn
        on_cluster = {"ArnEquals": {"ecs:cluster": cluster_arn}}
        # Agent tasks have no task role (constructs/agent_task.py): only execution roles are passed.
        agent_roles = [task.execution_role.role_arn for task in self.agents.values()]
        # The provider keys: whether each is set (DescribeSecret, at dispatch) and its value, which
        # the model gateway adds to an agent's model calls. Exactly these secrets: not the admin
        # key's (its execution role injects that) nor the GitHub one's.
        secret_arns = list(dict.fromkeys(self._agent_secret_arns(config, data).values()))
        read_secrets = [
            iam.PolicyStatement(
                actions=["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"],
                resources=secret_arns,
            ),
            # the secrets are encrypted with the data key; this decrypts through Secrets Manager only
            iam.PolicyStatement(
                actions=["kms:Decrypt"],
                resources=[data.key.key_arn],
                conditions={
                    "StringEquals": {"kms:ViaService": f"secretsmanager.{self.region}.{self.url_suffix}"}
                },
            ),
        ]
        return [
            iam.PolicyStatement(
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                    "dynamodb:Query",
                    "dynamodb:BatchGetItem",
                    "dynamodb:ConditionCheckItem",
                    "dynamodb:DescribeTable",
                ],
                resources=table_arns,
            ),  # fmt: skip
            # Listing tenants (admin only) pages through the small tenants table.
            iam.PolicyStatement(actions=["dynamodb:Scan"], resources=[data.tables["Tenants"].table_arn]),
            iam.PolicyStatement(
                actions=[
                    "sqs:SendMessage",
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes",
                ],
                resources=[q.queue_arn for q in queues],
            ),  # fmt: skip
            iam.PolicyStatement(actions=["ecs:DescribeClusters"], resources=[cluster_arn]),
            # Exactly the agents' task definitions, and only into this cluster.
            iam.PolicyStatement(
                actions=["ecs:RunTask"],
                resources=[task.task_definition.task_definition_arn for task in self.agents.values()],
                conditions=on_cluster,
            ),
            # Task ids are assigned at launch, and ListTasks authorizes on no ARN: the resource is
            # "*" and the ecs:cluster condition keeps all three to this cluster's tasks.
            iam.PolicyStatement(
                actions=["ecs:StopTask", "ecs:DescribeTasks", "ecs:ListTasks"],
                resources=["*"],
                conditions=on_cluster,
            ),
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=agent_roles,
                conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            ),
            *(read_secrets if secret_arns else []),
        ]

    def _acknowledge(self, config: EnvironmentConfig) -> None:
        """Every cdk-nag finding this stack accepts, with the reason it is safe."""
        if config.certificate_arn is not None:
            acknowledge(
                self.control_plane.redirect_listener,
                "NIST.800.53.R5-ELBv2ACMCertificateRequired",
                "Port 80 answers every request with a redirect to the HTTPS listener and serves nothing itself.",
            )
        else:
            for finding in (
                "NIST.800.53.R5-ALBHttpToHttpsRedirection",
                "NIST.800.53.R5-ELBv2ACMCertificateRequired",
            ):
                acknowledge(
                    self.control_plane.listener,
                    finding,
                    f"No certificate is configured for {config.name}: the HTTP listener admits only "
                    f"{', '.join(config.ingress_cidrs)}. Set certificate_arn to serve HTTPS (README, Deploying).",
                )
        for name, task in self.agents.items():
            if agent_environment(config.agent_settings.get(name)) or self.egress_proxy is not None:
                acknowledge(
                    task.task_definition,
                    "AwsSolutions-ECS2",
                    "The variables are the agent's model, provider base URL and extra settings, which "
                    "agents/agent_settings.py checks to hold no secret-looking name or value, and the egress "
                    "proxy's address; the agent task holds no provider key at all (the control plane's model "
                    "gateway adds it).",
                )
        if self.egress_proxy is not None:
            acknowledge(
                self.egress_proxy.task_definition,
                "AwsSolutions-ECS2",
                "The variables are the proxy's listeners (agent names, ports, allowlisted host patterns) and "
                "the VPC's address range; the proxy holds no secret and has no task role.",
            )
        if not config.container_insights:
            acknowledge(
                self.cluster,
                "AwsSolutions-ECS4",
                f"container_insights is off for {config.name} in cdk.json (a cheaper stage): ECS's own service "
                "metrics remain; the agents' CPU and memory alarms have no data there.",
            )
        if not config.waf:
            acknowledge(
                self.control_plane.load_balancer,
                "NIST.800.53.R5-ALBWAFEnabled",
                f"waf is off for {config.name} in cdk.json (a cheaper stage): the load balancer admits only "
                f"{', '.join(config.ingress_cidrs)}; the API authenticates every call.",
            )
        acknowledge(
            self.ecr_auth_policy,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource-level permissions; the token alone pulls nothing, each "
            "execution role may pull only from its own repository.",
        )
        acknowledge(
            self.control_plane.node.find_child("TaskRolePolicy"),
            "AwsSolutions-IAM5[Resource::*]",
            "Only ecs:StopTask, DescribeTasks and ListTasks are on '*': task ids are assigned at launch and "
            "ListTasks authorizes on no ARN; the ecs:cluster condition limits all three to this cluster.",
        )
        acknowledge(
            self.control_plane.task_definition,
            "AwsSolutions-ECS2",
            "The variables are generated resource names (tables, queues, cluster, subnets) and the agents' "
            "non-secret model settings (agents/agent_settings.py refuses secret-looking names and values); the "
            "one secret, the admin key, is injected from Secrets Manager.",
        )
