"""Registry stack: seven scanned, encrypted repositories with the lifecycle; immutable in prod."""

import json

import pytest


@pytest.mark.parametrize(
    ("env", "mutability"), [("dev", "MUTABLE"), ("staging", "MUTABLE"), ("prod", "IMMUTABLE")]
)
def test_seven_repositories_scanned_encrypted_with_lifecycle(synth, env, mutability):
    repos = synth.resources(env, "Registry", "AWS::ECR::Repository")
    assert len(repos) == 7
    for repo in (r["Properties"] for r in repos.values()):
        assert repo["ImageScanningConfiguration"] == {"ScanOnPush": True}
        assert repo["EncryptionConfiguration"] == {"EncryptionType": "KMS"}
        assert repo["ImageTagMutability"] == mutability
        rules = json.loads(repo["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
        untagged, tagged = sorted(rules, key=lambda r: r["rulePriority"])
        assert untagged["selection"] == {
            "tagStatus": "untagged",
            "countType": "sinceImagePushed",
            "countUnit": "days",
            "countNumber": 7,
        }
        assert tagged["selection"]["tagStatus"] == "tagged"
        assert (
            tagged["selection"]["countType"] == "imageCountMoreThan"
            and tagged["selection"]["countNumber"] == 10
        )
