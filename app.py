#!/usr/bin/env python3
"""The CDK entry point: one Stage per environment, every stage behind the cdk-nag gate.

`cdk synth` builds all environments; `cdk synth -c env=prod` (or `env=dev,staging`) narrows.
This is the only place that reads environment variables.
"""

from __future__ import annotations

import os
import sys

import aws_cdk as cdk

from agents.registry import RegistryError
from stacks.config import CONTEXT_KEY, ConfigError, load_environments
from stacks.nag import register_checks, unacknowledged_findings
from stacks.stage import OutpostStage


def build_app(app: cdk.App) -> list[OutpostStage]:
    configs = load_environments(
        app.node.try_get_context(CONTEXT_KEY) or {},
        selected=app.node.try_get_context("env"),
        default_account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
        default_region=os.environ.get("CDK_DEFAULT_REGION"),
    )
    register_checks(app)
    return [OutpostStage(app, config=config) for config in configs]


def main() -> None:
    app = cdk.App()
    try:
        build_app(app)
    except (ConfigError, RegistryError) as error:
        # One line naming the field and the value, not a stack trace.
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    assembly = app.synth()
    findings = unacknowledged_findings(assembly.directory)
    if findings:
        print("\n".join(["error: the security gate failed:", *findings]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
