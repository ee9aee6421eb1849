"""`make cost`: every stage's monthly cost from its synthesized templates (stacks/cost.py).

    python -m stacks.cost_report [--env dev,prod] [--cdk-out cdk.out] [--markdown]
    python -m stacks.cost_report --fresh [--env dev]   # exit 0 when cdk.out is current

Prices each stage with its region's table and again with every other region's table
(agents/aws_prices), idle and at the stated load, and Dev once more in the cheaper profile
LEAN_DEV (synthesized on the side into cdk.out/lean-dev, through the same security gate).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agents.infra_prices import prices_for, regions
from stacks.config import CONTEXT_KEY, ENVIRONMENTS
from stacks.cost import Estimate, Load, estimate, inventory

ROOT = Path(__file__).resolve().parents[1]
GOAL_IDLE_DEV = 60.0  # $ a month (README, Cost)
LEAN = "dev-lean"
# The cheaper dev profile: set these in cdk.json's dev to deploy it (README, Cost).
LEAN_DEV: Mapping[str, Any] = {
    "nat": "instance",
    "warm_pool": {"shell": 0},
    "container_insights": False,
    "waf": False,
    "observability": False,
    "internal_load_balancer": True,
    # DNS Firewall alone: connections to literal addresses are not stopped (docs/egress.md)
    "egress_proxy": False,
    "interface_endpoints": False,
}
SOURCES = ("app.py", "cdk.json", "stacks", "constructs", "agents", "control_plane")


def context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
    return context


def read_templates(assembly: Path) -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(assembly.glob("*.template.json"))}


def is_fresh(assembly: Path) -> bool:
    """Whether ``assembly`` was synthesized after the last change to the app's sources."""
    manifest = assembly / "manifest.json"
    if not manifest.is_file():
        return False
    built = manifest.stat().st_mtime
    for name in SOURCES:
        path = ROOT / name
        files = (
            [path]
            if path.is_file()
            else [p for p in path.rglob("*") if p.suffix in (".py", ".toml", ".json")]
        )
        if any(f.stat().st_mtime > built for f in files if "__pycache__" not in f.parts):
            return False
    return True


def synthesize_lean(outdir: Path) -> Path:
    """Dev with LEAN_DEV's settings, through the security gate, unless ``outdir`` is current."""
    assembly = outdir / "assembly-Dev"
    if is_fresh(assembly):
        return assembly
    import aws_cdk as cdk  # only here: the rest of this module runs without aws-cdk-lib

    from app import build_app
    from stacks.nag import unacknowledged_findings

    settings = context()
    settings[CONTEXT_KEY]["dev"] = {**settings[CONTEXT_KEY]["dev"], **LEAN_DEV}
    app = cdk.App(outdir=str(outdir), context={**settings, "env": "dev"})
    build_app(app)
    findings = unacknowledged_findings(app.synth().directory)
    if findings:
        raise SystemExit("\n".join(["error: the security gate failed for the lean dev profile:", *findings]))
    return assembly


def estimates(
    env: str, templates: Mapping[str, Mapping[str, Any]], *, home: str, load: Load
) -> dict[str, Estimate]:
    """The stage priced in its own region first, then in every other region with a table."""
    inv = inventory(env, templates)
    ordered = [home, *(r for r in regions() if r != home)]
    return {region: estimate(inv, prices_for(region), load) for region in ordered}


def money(value: float) -> str:
    return f"{value:,.2f}"


def stage_table(name: str, result: Estimate) -> list[str]:
    lines = [
        f"{name}: {result.region} prices of {result.prices_as_of}, 730 h a month, no free tier; "
        f"load: {result.load.describe()}",
        f"  {'item':<30} {'idle $/mo':>10} {'load $/mo':>10}  counted in the templates (assumed volumes)",
    ]
    for item in sorted(result.items, key=lambda i: (-i.idle, -i.load, i.name)):
        lines.append(f"  {item.name:<30} {money(item.idle):>10} {money(item.load):>10}  {item.counted}")
    lines.append(f"  {'total':<30} {money(result.idle):>10} {money(result.at_load):>10}")
    largest = ", ".join(f"{i.name} {money(i.idle)}" for i in result.largest(4))
    lines.append(f"  largest idle: {largest}")
    return lines


def summary_rows(results: Mapping[str, Mapping[str, Estimate]]) -> list[list[str]]:
    rows = []
    for name, by_region in results.items():
        home, *others = by_region.values()
        row = [name, money(home.idle), money(home.at_load)]
        for other in others:
            row += [money(other.idle), money(other.at_load)]
        row.append(", ".join(f"{i.name} {money(i.idle)}" for i in home.largest(3)))
        rows.append(row)
    return rows


def summary(results: Mapping[str, Mapping[str, Estimate]], *, markdown: bool) -> list[str]:
    first = next(iter(results.values()))
    header = ["stage"]
    for region in first:
        header += [f"idle {region}", f"at load {region}"]
    header.append("largest items, idle (home region)")
    rows = summary_rows(results)
    if markdown:
        return [
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" if i in (0, len(header) - 1) else "---:" for i in range(len(header))) + "|",
            *("| " + " | ".join(row) + " |" for row in rows),
        ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths)) + "  {}"
    return [fmt.format(*header), *(fmt.format(*row) for row in rows)]


def goal_line(results: Mapping[str, Mapping[str, Estimate]]) -> str:
    verdicts = []
    for name in ("dev", LEAN):
        if name in results:
            idle = next(iter(results[name].values())).idle
            verdicts.append(f"{name} ${money(idle)} {'within' if idle <= GOAL_IDLE_DEV else 'over'}")
    return f"goal: an idle dev stage at or under ${GOAL_IDLE_DEV:.0f} a month: " + "; ".join(verdicts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make cost", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=",".join(ENVIRONMENTS), help="comma-separated stages")
    parser.add_argument("--cdk-out", type=Path, default=ROOT / "cdk.out")
    parser.add_argument("--fresh", action="store_true", help="only say (exit 0/1) whether cdk.out is current")
    parser.add_argument("--no-lean", action="store_true", help="skip the lean dev profile")
    parser.add_argument("--markdown", action="store_true", help="only the summary, as a Markdown table")
    parser.add_argument("--dispatches", type=int, default=Load.dispatches_per_day, help="per day")
    parser.add_argument("--minutes", type=float, default=Load.minutes, help="per dispatch")
    parser.add_argument("--agent", default=Load.agent)
    args = parser.parse_args(argv)
    envs = [e.strip() for e in args.env.split(",") if e.strip()]
    unknown = sorted(set(envs) - set(ENVIRONMENTS))
    if unknown:
        parser.error(f"unknown stages {unknown}; known: {', '.join(ENVIRONMENTS)}")
    assemblies = {env: args.cdk_out / f"assembly-{env.capitalize()}" for env in envs}
    if args.fresh:
        return 0 if all(is_fresh(a) for a in assemblies.values()) else 1
    load = Load(dispatches_per_day=args.dispatches, minutes=args.minutes, agent=args.agent)
    settings = context()[CONTEXT_KEY]
    results: dict[str, dict[str, Estimate]] = {}
    for env, assembly in assemblies.items():
        if not assembly.is_dir():
            raise SystemExit(f"error: {assembly} is missing: run make synth (make cost does)")
        results[env] = estimates(env, read_templates(assembly), home=settings[env]["region"], load=load)
        if env == "dev" and not args.no_lean:
            lean = synthesize_lean(args.cdk_out / "lean-dev")
            results[LEAN] = estimates("dev", read_templates(lean), home=settings["dev"]["region"], load=load)
    if not args.markdown:
        for name, by_region in results.items():
            print("\n".join(stage_table(name, next(iter(by_region.values())))))
            print()
        if LEAN in results:
            print(f"{LEAN}: dev with {json.dumps(LEAN_DEV)}")
    print("\n".join(summary(results, markdown=args.markdown)))
    if not args.markdown:
        print(goal_line(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
