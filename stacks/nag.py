"""The security gate: cdk-nag's AwsSolutions and NIST 800-53 rev 5 packs on every stage."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, NIST80053R5Checks

REPORT = "validation-report.json"


def register_checks(app: cdk.App) -> None:
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), NIST80053R5Checks(app))


def unacknowledged_findings(outdir: str | Path) -> list[str]:
    """Findings in the synthesized validation report, one line each ("rule at construct path").

    CDK writes the report but, when the CLI runs the app, sets a failing exit code only inside
    the jsii node process; reading the report is what makes the gate fail synth for real.
    """
    report_file = Path(outdir) / REPORT
    if not report_file.exists():
        return []
    report = json.loads(report_file.read_text())
    return [
        f"{report_entry['pluginName']}: {violation['ruleName']} at {construct['constructPath']}"
        for report_entry in report.get("pluginReports", [])
        for violation in report_entry.get("violations", [])
        for construct in violation.get("violatingConstructs", [])
    ]
