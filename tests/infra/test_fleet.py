"""Fleet stack: every agent task hardened in every stage; least-privilege control plane."""

import json

import pytest

from agents.egress import PROXY_VARIABLES
from agents.registry import AGENTS, PROVIDER_KEY_ENV, PROVIDER_SECRETS

ENVS = ["dev", "staging", "prod"]


def agent_task_definitions(synth, env):
    """agent name -> (logical id, properties) of its task definition."""
    found = {}
    for logical_id, resource in synth.resources(env, "Fleet", "AWS::ECS::TaskDefinition").items():
        if logical_id.startswith("Agent"):
            found[
                resource["Properties"]["ContainerDefinitions"][0]["LogConfiguration"]["Options"][
                    "awslogs-stream-prefix"
                ]
            ] = (
                logical_id,
                resource["Properties"],
            )
    return found


def policies_of_role(synth, env, role_id):
    """Every policy document attached to a role: inline, managed or AWS::IAM::Policy."""
    resources = synth.raw[env]["Fleet"]["Resources"]
    role = resources[role_id]["Properties"]
    attached = [p["PolicyDocument"] for p in role.get("Policies", [])]
    for resource in resources.values():
        props = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and {
            "Ref": role_id
        } in props.get("Roles", []):
            attached.append(props["PolicyDocument"])
    managed = role.get("ManagedPolicyArns", [])
    return attached, managed


def test_cluster_has_fargate_and_spot_with_container_insights(synth):
    for env in ENVS:
        template = synth.templates[env]["Fleet"]
        template.has_resource_properties(
            "AWS::ECS::Cluster", {"ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}]}
        )
        (assoc,) = synth.resources(env, "Fleet", "AWS::ECS::ClusterCapacityProviderAssociations").values()
        assert set(assoc["Properties"]["CapacityProviders"]) == {"FARGATE", "FARGATE_SPOT"}


@pytest.mark.parametrize("env", ENVS)
def test_one_task_definition_per_enabled_agent(synth, env):
    assert set(agent_task_definitions(synth, env)) == set(synth.stages[env].fleet.agents) == set(AGENTS)


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_agent_task_is_hardened(synth, env, agent):
    entry = AGENTS[agent]
    _, task = agent_task_definitions(synth, env)[agent]
    assert task["Cpu"] == str(entry.cpu) and task["Memory"] == str(entry.memory)
    assert task["RuntimePlatform"] == {
        "CpuArchitecture": entry.architecture,
        "OperatingSystemFamily": "LINUX",
    }
    (container,) = task["ContainerDefinitions"]
    assert container["ReadonlyRootFilesystem"] is True
    assert container["Privileged"] is False
    uid, gid = container["User"].split(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit()
    assert container["LinuxParameters"]["Capabilities"] == {"Drop": ["ALL"]}
    # The runner is PID 1: an init would keep the whole environment readable in /proc/1/environ.
    assert container["LinuxParameters"]["InitProcessEnabled"] is False
    assert container["StopTimeout"] == 120
    # only where its HTTPS goes (the egress proxy, tests/infra/test_egress.py); the claim token
    # arrives per task, in RunTask overrides
    assert {e["Name"] for e in container.get("Environment", [])} == set(PROXY_VARIABLES)
    # Writable space: a workspace and a scratch volume, both task-local (private, gone with the task).
    volumes = {v["Name"]: v for v in task["Volumes"]}
    assert set(volumes) == {"workspace", "scratch"}
    assert all(set(v) == {"Name"} for v in volumes.values())  # no host path, no shared file system
    assert task["EphemeralStorage"] == {"SizeInGiB": entry.storage_gib}
    assert {m["SourceVolume"] for m in container["MountPoints"]} == {"workspace", "scratch"}
    # No secret at all: the model gateway adds the provider key outside the task.
    assert "Secrets" not in container
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_agent_task_has_no_task_role(synth, env, agent):
    """Even an empty task role gives the container a credential endpoint (169.254.170.2)."""
    logical_id, task = agent_task_definitions(synth, env)[agent]
    assert "TaskRoleArn" not in task
    prefix = logical_id.split("TaskDefinition")[0]
    roles = [k for k, v in synth.raw[env]["Fleet"]["Resources"].items() if v["Type"] == "AWS::IAM::Role"]
    agent_roles = [k for k in roles if k.startswith(prefix)]
    assert agent_roles == [task["ExecutionRoleArn"]["Fn::GetAtt"][0]]


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_agent_execution_role_reaches_only_its_image_and_logs(synth, env, agent):
    entry = AGENTS[agent]
    _, task = agent_task_definitions(synth, env)[agent]
    documents, managed = policies_of_role(synth, env, task["ExecutionRoleArn"]["Fn::GetAtt"][0])
    assert len(managed) == 1  # the shared, acknowledged ecr:GetAuthorizationToken policy
    (document,) = documents
    text = json.dumps(document)
    repo = "Repositories" + entry.image.title().replace("-", "")
    assert text.count("ImportValue") >= 1 and repo in text
    others = {AGENTS[a].image for a in AGENTS} - {entry.image}
    assert not any(f"Repositories{o.title()}" in text for o in others)
    log_group = task["ContainerDefinitions"][0]["LogConfiguration"]["Options"]["awslogs-group"]["Ref"]
    assert log_group in text
    assert "secretsmanager" not in text and "kms:" not in text and "Secrets" not in text
    for statement in document["Statement"]:
        assert statement["Resource"] != "*"


@pytest.mark.parametrize("env", ENVS)
def test_agent_log_groups_have_retention_and_encryption(synth, env):
    groups = [g["Properties"] for g in synth.resources(env, "Fleet", "AWS::Logs::LogGroup").values()]
    assert len(groups) == len(AGENTS) + 3  # each agent, the control plane, the WAF, the egress proxy
    expected = synth.stages[env].config.log_retention_days
    assert all(g["RetentionInDays"] == expected and "KmsKeyId" in g for g in groups)


def security_group_rules(synth, env):
    resources = synth.raw[env]["Fleet"]["Resources"]
    groups = {k: v["Properties"] for k, v in resources.items() if v["Type"] == "AWS::EC2::SecurityGroup"}
    ingress = [v["Properties"] for v in resources.values() if v["Type"] == "AWS::EC2::SecurityGroupIngress"]
    egress = [v["Properties"] for v in resources.values() if v["Type"] == "AWS::EC2::SecurityGroupEgress"]
    return groups, ingress, egress


def group_id(groups, prefix):
    (logical_id,) = [k for k in groups if k.startswith(prefix)]
    return logical_id


@pytest.mark.parametrize("env", ENVS)
def test_agent_security_groups_have_no_ingress(synth, env):
    groups, ingress, _ = security_group_rules(synth, env)
    for name in synth.stages[env].config.agents:  # one group per agent
        agent = group_id(groups, f"AgentSecurityGroup{name.capitalize()}")
        assert "SecurityGroupIngress" not in groups[agent]
        assert not [r for r in ingress if r["GroupId"] == {"Fn::GetAtt": [agent, "GroupId"]}]
    # (their egress: tests/infra/test_egress.py)


@pytest.mark.parametrize("env", ENVS)
def test_nothing_reaches_the_workspaces_file_system(synth, env):
    _, ingress, egress = security_group_rules(synth, env)
    assert not [r for r in ingress + egress if r.get("FromPort") == 2049]
    data = synth.raw[env]["Data"]["Resources"]
    (efs_group,) = [v["Properties"] for k, v in data.items() if k.startswith("WorkspacesSecurityGroup")]
    assert "SecurityGroupIngress" not in efs_group


@pytest.mark.parametrize("env", ENVS)
def test_control_plane_reachable_from_load_balancer_and_runners_only(synth, env):
    groups, ingress, _ = security_group_rules(synth, env)
    control_plane = group_id(groups, "ControlPlaneSecurityGroup")
    rules = [r for r in ingress if r["GroupId"] == {"Fn::GetAtt": [control_plane, "GroupId"]}]
    sources = sorted(r["SourceSecurityGroupId"]["Fn::GetAtt"][0] for r in rules)
    runners = [
        group_id(groups, f"AgentSecurityGroup{name.capitalize()}") for name in synth.stages[env].config.agents
    ]
    assert sources == sorted([*runners, group_id(groups, "ControlPlaneLoadBalancerSecurityGroup")])
    assert {r["FromPort"] for r in rules} == {8080}
    lb = groups[group_id(groups, "ControlPlaneLoadBalancerSecurityGroup")]
    cidrs = {r["CidrIp"] for r in lb["SecurityGroupIngress"]}
    assert cidrs == set(synth.stages[env].config.ingress_cidrs)


@pytest.mark.parametrize(("env", "https"), [("dev", False), ("staging", True), ("prod", True)])
def test_control_plane_service_behind_load_balancer(synth, env, https):
    template = synth.templates[env]["Fleet"]
    (task,) = [
        t["Properties"]
        for k, t in synth.resources(env, "Fleet", "AWS::ECS::TaskDefinition").items()
        if k.startswith("ControlPlane")
    ]
    assert task["RuntimePlatform"]["CpuArchitecture"] == "ARM64"
    if env == "dev":
        assert (task["Cpu"], task["Memory"]) == ("512", "1024")
    (container,) = task["ContainerDefinitions"]
    assert "/health/live" in " ".join(container["HealthCheck"]["Command"])
    env_names = {e["Name"] for e in container["Environment"]}
    assert {"OUTPOST_DISPATCHES_TABLE", "OUTPOST_TENANTS_TABLE", "OUTPOST_AUDIT_TABLE", "OUTPOST_ARTIFACTS_BUCKET",
            "OUTPOST_DISPATCH_QUEUE_URLS", "OUTPOST_TASK_EVENTS_QUEUE_URL", "OUTPOST_DEAD_LETTER_QUEUE_URL",
            "OUTPOST_CLUSTER_ARN",
            "OUTPOST_TASK_DEFINITIONS", "OUTPOST_SUBNETS", "OUTPOST_AGENT_SECURITY_GROUPS"} <= env_names  # fmt: skip
    assert [s["Name"] for s in container["Secrets"]] == ["OUTPOST_ADMIN_KEY"]
    assert "OUTPOST_ADMIN_KEY" not in env_names
    template.has_resource_properties(
        "AWS::ECS::Service",
        {
            "DeploymentConfiguration": {
                "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
                "MinimumHealthyPercent": 100,
                "MaximumPercent": 200,
            },
            "EnableExecuteCommand": False,
        },
    )
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup", {"HealthCheckPath": "/health/live"}
    )
    listeners = [
        lst["Properties"]
        for lst in synth.resources(env, "Fleet", "AWS::ElasticLoadBalancingV2::Listener").values()
    ]
    assert sorted(x["Protocol"] for x in listeners) == (["HTTP", "HTTPS"] if https else ["HTTP"])
    if https:
        (http,) = [x for x in listeners if x["Protocol"] == "HTTP"]
        assert http["DefaultActions"][0]["Type"] == "redirect"
    (internal,) = synth.resources(env, "Fleet", "AWS::ElasticLoadBalancingV2::ListenerRule").values()
    assert internal["Properties"]["Conditions"][0]["PathPatternConfig"]["Values"] == [
        "/internal/*",
        "/gateway/*",
    ]
    assert internal["Properties"]["Actions"][0]["FixedResponseConfig"]["StatusCode"] == "404"
    template.resource_count_is("AWS::WAFv2::WebACLAssociation", 1)
    scaling = synth.resources(env, "Fleet", "AWS::ApplicationAutoScaling::ScalingPolicy")
    assert len(scaling) == (2 if env == "prod" else 0)


@pytest.mark.parametrize("env", ENVS)
def test_control_plane_task_role_is_least_privilege(synth, env):
    resources = synth.raw[env]["Fleet"]["Resources"]
    (role_id,) = [
        k
        for k, v in resources.items()
        if k.startswith("ControlPlaneTaskRole") and v["Type"] == "AWS::IAM::Role"
    ]
    documents, managed = policies_of_role(synth, env, role_id)
    (document,) = documents
    assert len(managed) == 1 and "ArtifactsAccess" in json.dumps(managed)
    by_action = {}
    for statement in document["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not any(a.endswith("*") for a in actions), actions
        for action in actions:
            by_action[action] = statement
    run = by_action["ecs:RunTask"]
    task_defs = {
        k for k in resources if resources[k]["Type"] == "AWS::ECS::TaskDefinition" and k.startswith("Agent")
    }
    assert {r["Ref"] for r in run["Resource"]} == task_defs
    assert "ecs:cluster" in run["Condition"]["ArnEquals"]
    for action in ("ecs:StopTask", "ecs:DescribeTasks", "ecs:ListTasks"):
        assert by_action[action]["Condition"]["ArnEquals"]["ecs:cluster"] == {
            "Fn::GetAtt": ["ClusterEB0386A7", "Arn"]
        }
    pass_role = by_action["iam:PassRole"]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    passed = {r["Fn::GetAtt"][0] for r in pass_role["Resource"]}
    assert passed and all(p.startswith("Agent") for p in passed)
    # Each agent's execution role, and nothing else: agent tasks have no task role.
    executions = {
        task["ExecutionRoleArn"]["Fn::GetAtt"][0] for _, task in agent_task_definitions(synth, env).values()
    }
    assert passed == executions and len(passed) == len(AGENTS)


@pytest.mark.parametrize("env", ENVS)
def test_task_state_events_flow_to_the_task_events_queue(synth, env):
    (rule,) = synth.resources(env, "Fleet", "AWS::Events::Rule").values()
    props = rule["Properties"]
    assert props["Name"] == f"outpost-{env}-task-state-change"
    assert props["EventPattern"]["source"] == ["aws.ecs"]
    assert props["EventPattern"]["detail-type"] == ["ECS Task State Change"]
    assert props["EventPattern"]["detail"]["clusterArn"] == [{"Fn::GetAtt": ["ClusterEB0386A7", "Arn"]}]
    assert "TaskEventsQueue" in json.dumps(props["Targets"])
    # the data stack admits exactly that rule to the encrypted queue
    policies = json.dumps(synth.resources(env, "Data", "AWS::SQS::QueuePolicy"))
    assert f"rule/outpost-{env}-task-state-change" in policies


def test_control_plane_may_scan_only_the_tenants_table(synth):
    resources = synth.raw["dev"]["Fleet"]["Resources"]
    (policy,) = [
        v["Properties"]["PolicyDocument"]
        for k, v in resources.items()
        if k.startswith("ControlPlaneTaskRolePolicy") and v["Type"] == "AWS::IAM::ManagedPolicy"
    ]
    (scan,) = [s for s in policy["Statement"] if s["Action"] == "dynamodb:Scan"]
    assert "TenantsTable" in json.dumps(scan["Resource"]) and "Dispatches" not in json.dumps(scan["Resource"])


def test_task_definitions_use_the_configured_image_tag(synth):
    for env in ENVS:
        tag = synth.stages[env].config.image_tag
        for _, task in agent_task_definitions(synth, env).values():
            assert json.dumps(task["ContainerDefinitions"][0]["Image"]).endswith(f':{tag}"]]}}')


def test_agent_container_is_the_one_the_ecs_runtime_overrides(synth):
    from control_plane.runtime.ecs import EcsConfig

    expected = EcsConfig(cluster="c", task_definitions={}, subnets=(), security_groups={}).container_name
    for _, task in agent_task_definitions(synth, "prod").values():
        assert [c["Name"] for c in task["ContainerDefinitions"]] == [expected]


def test_control_plane_writes_only_to_its_task_local_tmp(synth):
    (task,) = [
        t["Properties"]
        for k, t in synth.resources("prod", "Fleet", "AWS::ECS::TaskDefinition").items()
        if k.startswith("ControlPlane")
    ]
    (container,) = task["ContainerDefinitions"]
    assert container["ReadonlyRootFilesystem"] is True
    assert container["MountPoints"] == [{"ContainerPath": "/tmp", "ReadOnly": False, "SourceVolume": "tmp"}]
    assert task["Volumes"] == [{"Name": "tmp"}]


@pytest.mark.parametrize("env", ENVS)
def test_control_plane_environment_is_what_its_settings_read(synth, env):
    from control_plane.settings import Settings

    (task,) = [
        t["Properties"]
        for k, t in synth.resources(env, "Fleet", "AWS::ECS::TaskDefinition").items()
        if k.startswith("ControlPlane")
    ]
    (container,) = task["ContainerDefinitions"]
    names = [e["Name"] for e in container["Environment"]] + [s["Name"] for s in container["Secrets"]]
    fields = {f"OUTPOST_{name.upper()}" for name in Settings.model_fields}
    assert set(names) <= fields, set(names) - fields
    assert {"OUTPOST_RUNTIME", "OUTPOST_INTERNAL_URL", "OUTPOST_ADMIN_KEY"} <= set(names)


@pytest.mark.parametrize(("env", "scheme"), [("dev", "http"), ("staging", "https"), ("prod", "https")])
def test_api_url_output_is_the_load_balancer(synth, env, scheme):
    output = synth.raw[env]["Fleet"]["Outputs"]["ApiUrl"]
    (lb_id,) = synth.resources(env, "Fleet", "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert output["Value"] == {"Fn::Join": ["", [f"{scheme}://", {"Fn::GetAtt": [lb_id, "DNSName"]}]]}
    assert "OUTPOST_URL" in output["Description"] and "Export" not in output
    if scheme == "http":
        assert "admits only 10.0.0.0/8 (ingress_cidrs in cdk.json)" in output["Description"]


def provider_secret_exports(text: str) -> set[str]:
    """The data stack's secrets a piece of template names (by their exported ARNs)."""
    return {
        name
        for name in ("Anthropic", "Openai", "Google", "Xai", "Admin", "Github")
        if f"Secrets{name}" in text
    }


@pytest.mark.parametrize("env", ENVS)
def test_no_agent_task_definition_or_agent_role_touches_a_provider_secret(synth, env):
    """Issue 12's wall: provider keys never reach an agent task, in any stage."""
    resources = synth.raw[env]["Fleet"]["Resources"]
    agent_roles = set()
    for logical_id, task in agent_task_definitions(synth, env).values():
        for container in task["ContainerDefinitions"]:
            assert "Secrets" not in container, logical_id
            assert not provider_secret_exports(json.dumps(container)), logical_id
            names = {e["Name"] for e in container.get("Environment", [])}
            assert not names & set(PROVIDER_KEY_ENV.values()), logical_id
        for field in ("ExecutionRoleArn", "TaskRoleArn"):
            if field in task:
                agent_roles.add(task[field]["Fn::GetAtt"][0])
    assert len(agent_roles) == len(AGENTS)
    for role in agent_roles:
        documents, managed = policies_of_role(synth, env, role)
        text = json.dumps(documents) + json.dumps([resources.get(m.get("Ref", ""), m) for m in managed])
        assert "secretsmanager" not in text and "kms:Decrypt" not in text, role
        assert not provider_secret_exports(text), role
    # and the only role in the stack that may read a provider key's value is the control plane's task role
    readers = set()
    for logical_id, resource in resources.items():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                actions = (
                    statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                )
                if "secretsmanager:GetSecretValue" in actions and provider_secret_exports(
                    json.dumps(statement["Resource"])
                ) & {"Anthropic", "Openai", "Google", "Xai"}:
                    readers.add(logical_id)
    assert len(readers) == 1 and next(iter(readers)).startswith("ControlPlaneTaskRolePolicy"), readers
    assert set(PROVIDER_SECRETS) == {"anthropic", "openai", "google", "xai"}  # the names checked above


@pytest.mark.parametrize("env", ENVS)
def test_control_plane_reads_exactly_the_agents_key_secrets(synth, env):
    resources = synth.raw[env]["Fleet"]["Resources"]
    (task,) = [
        t["Properties"]
        for k, t in synth.resources(env, "Fleet", "AWS::ECS::TaskDefinition").items()
        if k.startswith("ControlPlane")
    ]
    (container,) = task["ContainerDefinitions"]
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    agent_secrets = json.dumps(environment["OUTPOST_AGENT_SECRETS"])
    for name in synth.stages[env].config.agents:
        provider = AGENTS[name].secret
        assert (f'\\"{name}\\":' in agent_secrets) is (provider is not None), name
        if provider:
            assert f"Secrets{provider.capitalize()}" in agent_secrets
    (role_id,) = [
        k
        for k, v in resources.items()
        if k.startswith("ControlPlaneTaskRole") and v["Type"] == "AWS::IAM::Role"
    ]
    (document,), _ = policies_of_role(synth, env, role_id)
    statements = [s for s in document["Statement"] if "secretsmanager" in json.dumps(s["Action"])]
    (read,) = statements
    # whether a key is set (at dispatch) and its value (the model gateway), on exactly these
    assert sorted(read["Action"]) == ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]
    assert provider_secret_exports(json.dumps(read["Resource"])) == {"Anthropic", "Openai", "Google", "Xai"}
    assert len(read["Resource"]) == 4  # one each: no wildcard, no other secret
    (decrypt,) = [s for s in document["Statement"] if s["Action"] == "kms:Decrypt"]
    assert "DataKey" in json.dumps(decrypt["Resource"])
    (via,) = decrypt["Condition"]["StringEquals"].items()  # only through Secrets Manager
    assert via[0] == "kms:ViaService" and "secretsmanager.us-east-1." in json.dumps(via[1])
