"""The cdk-nag gate: every stage passes, and a real finding fails synthesis."""

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3

from stacks.nag import register_checks, unacknowledged_findings


def test_synth_every_stage_without_findings(synth):
    assert set(synth.stages) == {"dev", "staging", "prod"}
    assert unacknowledged_findings(synth.outdir) == []


def test_synth_fails_on_an_unacknowledged_finding(tmp_path):
    app = cdk.App(outdir=str(tmp_path))
    register_checks(app)
    stack = cdk.Stack(app, "Leaky")
    s3.CfnBucket(stack, "Open")  # no encryption, no logging, no public access block
    with pytest.raises(Exception, match="Validation failed|ValidationFailed"):
        app.synth()
    findings = unacknowledged_findings(tmp_path)
    assert any("AwsSolutions-S1" in f and "Leaky/Open" in f for f in findings)
    assert any("NIST.800.53.R5-S3BucketLoggingEnabled" in f for f in findings)


def acknowledgments(stage) -> list[tuple[str, str, str]]:
    """(construct path, finding, reason) of every acknowledgment this project made in a stage."""
    found = []
    for construct in stage.node.find_all():
        for entry in construct.node.metadata:
            if entry.type != cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                continue
            for finding, reason in entry.data.items():
                # CDK acknowledges a few rules of its own validator itself; they are not ours.
                if not finding.startswith("CloudFormation-Validate::"):
                    found.append((construct, finding.removeprefix("Annotation::"), reason))
    return found


def test_acknowledgments_are_few_narrow_and_explained(synth):
    for env, stage in synth.stages.items():
        acks = acknowledgments(stage)
        # few distinct reasons: one reason may cover each agent's task definition alike
        reasons = {(finding, reason) for _, finding, reason in acks}
        assert 0 < len(reasons) <= 15, (env, sorted(reasons))
        for construct, finding, reason in acks:
            assert finding.startswith(("AwsSolutions-", "NIST.800.53.R5-")), finding
            # never a whole stack or stage: always the construct the finding is about
            assert not isinstance(construct, cdk.Stack | cdk.Stage), (construct.node.path, finding)
            assert len(reason) > 60, (finding, reason)
