"""Audit stack: a validated, encrypted CloudTrail trail."""

import pytest
from aws_cdk.assertions import Match


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_trail_validates_log_files_into_encrypted_bucket(synth, env):
    template = synth.templates[env]["Audit"]
    template.has_resource_properties(
        "AWS::CloudTrail::Trail",
        {
            "EnableLogFileValidation": True,
            "IsMultiRegionTrail": True,
            "KMSKeyId": Match.any_value(),
            "CloudWatchLogsLogGroupArn": Match.any_value(),
        },
    )
    (bucket,) = synth.resources(env, "Audit", "AWS::S3::Bucket").values()
    assert (
        bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
            "ServerSideEncryptionByDefault"
        ]["SSEAlgorithm"]
        == "aws:kms"
    )
    assert bucket["Properties"]["LoggingConfiguration"]["LogFilePrefix"] == "cloudtrail/"
