"""Data stack: tables, buckets, workspaces, queues, secrets and keys with their guards."""

import json

import pytest
from aws_cdk.assertions import Match

from agents.registry import AGENTS
from control_plane.schema import TABLES

ENVS = ["dev", "staging", "prod"]


@pytest.mark.parametrize("env", ENVS)
def test_tables_follow_the_shared_schema_with_pitr_and_encryption(synth, env):
    tables = synth.resources(env, "Data", "AWS::DynamoDB::GlobalTable")
    assert len(tables) == len(TABLES)
    for schema in TABLES:
        (props,) = [t["Properties"] for k, t in tables.items() if k.startswith(f"{schema.id}Table")]
        keys = {k["AttributeName"]: k["KeyType"] for k in props["KeySchema"]}
        assert keys[schema.partition_key] == "HASH"
        assert {i["IndexName"] for i in props.get("GlobalSecondaryIndexes", [])} == {
            i.name for i in schema.indexes
        }
        if schema.ttl_attribute:
            assert props["TimeToLiveSpecification"] == {
                "AttributeName": schema.ttl_attribute,
                "Enabled": True,
            }
        replica = props["Replicas"][0]
        assert replica["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        if env == "prod":  # customer key in prod
            assert props["SSESpecification"]["SSEType"] == "KMS"
            assert "KMSMasterKeyId" in replica["SSESpecification"]
            assert replica["DeletionProtectionEnabled"] is True
        else:
            assert props["SSESpecification"]["SSEEnabled"] is True


def test_dispatch_indexes_list_a_tenant_newest_first_and_by_status(synth):
    tables = synth.resources("prod", "Data", "AWS::DynamoDB::GlobalTable")
    (dispatches,) = [t["Properties"] for k, t in tables.items() if k.startswith("DispatchesTable")]
    indexes = {
        i["IndexName"]: {k["AttributeName"]: k["KeyType"] for k in i["KeySchema"]}
        for i in dispatches["GlobalSecondaryIndexes"]
    }
    assert indexes["by-tenant"] == {"tenant_id": "HASH", "created_at": "RANGE"}
    assert indexes["by-tenant-status"] == {"tenant_status": "HASH", "created_at": "RANGE"}


@pytest.mark.parametrize("env", ENVS)
def test_buckets_block_public_access_require_tls_and_are_versioned_and_logged(synth, env):
    buckets = synth.resources(env, "Data", "AWS::S3::Bucket")
    assert len(buckets) == 2
    for props in (b["Properties"] for b in buckets.values()):
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
        }  # fmt: skip
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert any("ExpirationInDays" in rule for rule in props["LifecycleConfiguration"]["Rules"])
    (artifacts,) = [b["Properties"] for k, b in buckets.items() if k.startswith("Artifacts")]
    assert artifacts["LoggingConfiguration"]["LogFilePrefix"] == "artifacts/"
    sse = artifacts["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"
    ]
    assert sse["SSEAlgorithm"] == "aws:kms"
    policies = synth.resources(env, "Data", "AWS::S3::BucketPolicy").values()
    assert len(policies) == 2
    for policy in policies:
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}.items() <= max(
            statements, key=lambda s: s.get("Effect") == "Deny"
        ).items()


@pytest.mark.parametrize("env", ENVS)
def test_workspaces_file_system_is_encrypted_with_non_root_access_point(synth, env):
    template = synth.templates[env]["Data"]
    template.has_resource_properties(
        "AWS::EFS::FileSystem", {"Encrypted": True, "KmsKeyId": Match.any_value()}
    )
    template.has_resource_properties(
        "AWS::EFS::AccessPoint",
        {"PosixUser": {"Uid": "10001", "Gid": "10001"}, "RootDirectory": Match.any_value()},
    )
    (fs,) = synth.resources(env, "Data", "AWS::EFS::FileSystem").values()
    statements = fs["Properties"]["FileSystemPolicy"]["Statement"]
    conditions = [s["Condition"] for s in statements if s["Effect"] == "Deny"]
    assert {"Bool": {"aws:SecureTransport": "false"}} in conditions
    assert {"Null": {"elasticfilesystem:AccessPointArn": "true"}} in conditions


@pytest.mark.parametrize("env", ENVS)
def test_queues_are_encrypted_tls_only_with_dead_letter_queue(synth, env):
    queues = synth.resources(env, "Data", "AWS::SQS::Queue")
    assert len(queues) == len(AGENTS) + 2  # one per agent, task events, DLQ
    (dlq_id,) = [k for k in queues if k.startswith("DeadLetterQueue")]
    for logical_id, queue in queues.items():
        assert "KmsMasterKeyId" in queue["Properties"]
        if logical_id != dlq_id:
            assert queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"] == {
                "Fn::GetAtt": [dlq_id, "Arn"]
            }
    for policy in synth.resources(env, "Data", "AWS::SQS::QueuePolicy").values():
        assert '"aws:SecureTransport": "false"' in json.dumps(policy)


@pytest.mark.parametrize("env", ENVS)
def test_secrets_one_per_provider_github_and_admin_under_customer_key(synth, env):
    secrets = synth.resources(env, "Data", "AWS::SecretsManager::Secret")
    names = sorted(k.removeprefix("Secrets")[:-8].lower() for k in secrets)
    assert names == sorted(["anthropic", "openai", "google", "xai", "github", "admin"])
    assert all("KmsKeyId" in s["Properties"] for s in secrets.values())
    keys = synth.resources(env, "Data", "AWS::KMS::Key").values()
    assert keys and all(k["Properties"]["EnableKeyRotation"] for k in keys)


def test_backup_plan_covers_tables_and_workspaces(synth):
    (selection,) = synth.resources("prod", "Data", "AWS::Backup::BackupSelection").values()
    resources = json.dumps(selection["Properties"]["BackupSelection"]["Resources"])
    for table in ("DispatchesTable", "TenantsTable", "AuditTable"):
        assert f'["{table}' in resources
    assert "elasticfilesystem" in resources


@pytest.mark.parametrize("env", ENVS)
def test_only_the_admin_secret_gets_a_generated_value(synth, env):
    # the others start empty (no version, nothing AWSCURRENT) until an operator stores the key
    secrets = synth.resources(env, "Data", "AWS::SecretsManager::Secret")
    generated = sorted(
        k.removeprefix("Secrets")[:-8].lower()
        for k, s in secrets.items()
        if "GenerateSecretString" in s["Properties"]
    )
    assert generated == ["admin"]
    assert not any("SecretString" in s["Properties"] for s in secrets.values())


@pytest.mark.parametrize("env", ENVS)
def test_outputs_name_the_admin_and_provider_secrets(synth, env):
    outputs = synth.raw[env]["Data"]["Outputs"]
    secrets = synth.resources(env, "Data", "AWS::SecretsManager::Secret")
    for name in ("Admin", "Anthropic", "Openai", "Google", "Xai"):
        output = outputs[f"{name}SecretName"]
        assert "Export" not in output
        (secret_id,) = [k for k in secrets if k.startswith(f"Secrets{name}")]
        assert secret_id in json.dumps(output["Value"])  # the generated name, parsed from its ARN
    assert "get-secret-value" in outputs["AdminSecretName"]["Description"]
    assert "ANTHROPIC_API_KEY of claude" in outputs["AnthropicSecretName"]["Description"]
    assert "put-secret-value" in outputs["OpenaiSecretName"]["Description"]
