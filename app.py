#!/usr/bin/env python3
"""The CDK entry point: one Stage per environment, every stage behind the cdk-nag gate.

`cdk synth` builds all environments; `cdk synth -c env=prod` (or `env=dev,staging`) narrows.
This is the only place that reads environment variables.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType

from agents.errors import SettingError


def _report_setting_errors(
    kind: type[BaseException], error: BaseException, traceback: TracebackType | None
) -> None:
    """A bad registry entry or config value ends synth with one line, not a stack trace."""
    if issubclass(kind, SettingError):
        print(f"error: {error}", file=sys.stderr)
    else:
        sys.__excepthook__(kind, error, traceback)


# Installed before the registry and config are imported: both check themselves on import.
sys.excepthook = _report_setting_errors

import aws_cdk as cdk  # noqa: E402

from stacks.config import CONTEXT_KEY, load_environments  # noqa: E402
from stacks.nag import register_checks, unacknowledged_findings  # noqa: E402
from stacks.stage import OutpostStage  # noqa: E402


def build_app(app: cdk.App) -> list[OutpostStage]:
    configs = load_environments(
        app.node.try_get_context(CONTEXT_KEY) or {},
        selected=app.node.try_get_context("env"),
        default_account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
        default_region=os.environ.get("CDK_DEFAULT_REGION"),
        image_tag=app.node.try_get_context("image_tag"),
    )
    register_checks(app)
    return [OutpostStage(app, config=config) for config in configs]


def main() -> None:
    app = cdk.App()
    build_app(app)
    assembly = app.synth()
    findings = unacknowledged_findings(assembly.directory)
    if findings:
        print("\n".join(["error: the security gate failed:", *findings]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
