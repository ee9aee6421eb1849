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


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_outputs_give_each_repository_uri(synth, env):
    outputs = synth.raw[env]["Registry"]["Outputs"]
    repos = synth.resources(env, "Registry", "AWS::ECR::Repository")
    for image in ("Base", "Claude", "Codex", "Gemini", "Aider", "Grok", "ControlPlane"):
        output = outputs[f"{image}RepositoryUri"]
        (repo_id,) = [k for k in repos if k.startswith(f"Repositories{image}")]
        assert f'"{repo_id}"' in json.dumps(output["Value"]) and ".dkr.ecr." in json.dumps(output["Value"])
        assert "publish-images.sh" in output["Description"] and "Export" not in output
