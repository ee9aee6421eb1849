"""Outpost's stateful resources, by stack and logical id: what a deploy must never replace or
delete without someone saying so.

Changing one of these ids makes CloudFormation replace the resource: a new, empty table,
bucket, file system, queue, secret or key. If a refactor moves a construct, keep its id (e.g.
with ``override_logical_id``) instead of editing this list. tests/infra/test_stateful_resources.py
checks that every stage has exactly these; ``make diff`` (stacks/diff.py) fails on a change
that replaces or deletes one of them.
"""

from __future__ import annotations

from types import MappingProxyType

STATEFUL = MappingProxyType(
    {
        "Network": {
            "LogsKeyA6AB43B2": "AWS::KMS::Key",
            "NetworkFlowLogs2BEC3212": "AWS::Logs::LogGroup",
        },
        "Data": {
            "DataKey17AFBB84": "AWS::KMS::Key",
            "DispatchesTable647333E2": "AWS::DynamoDB::GlobalTable",
            "TenantsTable97BAC775": "AWS::DynamoDB::GlobalTable",
            "AuditTable18A3095C": "AWS::DynamoDB::GlobalTable",
            "AccessLogsBucketCD784A59": "AWS::S3::Bucket",
            "ArtifactsBucket88671897": "AWS::S3::Bucket",
            "WorkspacesFileSystem152F9B4F": "AWS::EFS::FileSystem",
            "WorkspacesFileSystemAccessPoint030469C7": "AWS::EFS::AccessPoint",
            "DeadLetterQueue9F481546": "AWS::SQS::Queue",
            "TaskEventsQueue610030A9": "AWS::SQS::Queue",
            "DispatchQueueClaudeQueue27DF498A": "AWS::SQS::Queue",
            "DispatchQueueCodexQueueF951ADDE": "AWS::SQS::Queue",
            "DispatchQueueGeminiQueue5A32C1C8": "AWS::SQS::Queue",
            "DispatchQueueAiderQueueDCD40457": "AWS::SQS::Queue",
            "DispatchQueueGrokQueue79A144BA": "AWS::SQS::Queue",
            "DispatchQueueShellQueue3E28325C": "AWS::SQS::Queue",
            "SecretsAnthropicC9EF55EF": "AWS::SecretsManager::Secret",
            "SecretsOpenaiCF7AB445": "AWS::SecretsManager::Secret",
            "SecretsGoogle8DE40F2F": "AWS::SecretsManager::Secret",
            "SecretsXaiBE6D3F79": "AWS::SecretsManager::Secret",
            "SecretsGithubFC133D62": "AWS::SecretsManager::Secret",
            "SecretsAdmin3D879B6C": "AWS::SecretsManager::Secret",
            "BackupsVault1F11AFCC": "AWS::Backup::BackupVault",
        },
        "Registry": {
            "RepositoriesBase7080043A": "AWS::ECR::Repository",
            "RepositoriesClaudeD81F7054": "AWS::ECR::Repository",
            "RepositoriesCodex60CB8494": "AWS::ECR::Repository",
            "RepositoriesGeminiEB81AEAE": "AWS::ECR::Repository",
            "RepositoriesAiderAA1EC740": "AWS::ECR::Repository",
            "RepositoriesGrok6E59FD20": "AWS::ECR::Repository",
            "RepositoriesControlPlaneA6BFDD34": "AWS::ECR::Repository",
        },
        "Audit": {
            "TrailKey38EB2549": "AWS::KMS::Key",
            "TrailBucket5F1A7E24": "AWS::S3::Bucket",
            "TrailLogGroup4CBE3AF5": "AWS::Logs::LogGroup",
        },
    }
)
