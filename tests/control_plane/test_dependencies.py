"""Every runtime dependency the project declares is one the code imports: an unused pin is
dead weight in the control-plane image and a supply-chain risk with no benefit."""

from __future__ import annotations

import ast
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
CODE = ("control_plane", "agents", "stacks", "constructs")


def imported_top_level_modules() -> set[str]:
    modules: set[str] = set()
    for package in CODE:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    modules.add(node.module.split(".")[0])
    return modules


def test_every_declared_runtime_dependency_is_imported() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    providers: dict[str, set[str]] = {}
    for module, distributions in metadata.packages_distributions().items():
        for distribution in distributions:
            providers.setdefault(canonicalize_name(distribution), set()).add(module)
    imported = imported_top_level_modules()
    unused = [
        dep
        for dep in declared
        if not providers.get(canonicalize_name(Requirement(dep).name), set()) & imported
    ]
    assert unused == [], f"declared in pyproject.toml but never imported: {unused}"
