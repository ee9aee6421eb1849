"""`make outputs ENV=dev`: the deployed stage's stack outputs, the values a first deploy needs.

The API URL (Fleet), the admin and provider-key secret names (Data), the repository URIs
(Registry), the CI roles (Ci): read from CloudFormation in the stage's region (cdk.json), so
nobody has to find generated names in the console. Credentials for the account are needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stacks.config import CONTEXT_KEY, ENVIRONMENTS

ROOT = Path(__file__).resolve().parents[1]
# Every stack a stage may have, in deploy order (stacks/stage.py); Ci only with ci_repository.
STACKS = ("Network", "Data", "Registry", "Audit", "Fleet", "Observability", "Ci")


def stage_region(env: str, cdk_json: Path = ROOT / "cdk.json") -> str | None:
    """The stage's region as cdk.json sets it (None: the AWS CLI's own, which dev may use)."""
    region: str | None = json.loads(cdk_json.read_text())["context"][CONTEXT_KEY][env].get("region")
    return region


def stage_outputs(cloudformation: Any, env: str) -> dict[str, list[tuple[str, str, str]]]:
    """Per deployed stack of the stage: its outputs as (key, value, description), by key."""
    found: dict[str, list[tuple[str, str, str]]] = {}
    for stack in STACKS:
        name = f"{env.capitalize()}-{stack}"
        try:
            (described,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
        except cloudformation.exceptions.ClientError as error:
            if "does not exist" in str(error):
                continue  # not deployed (yet), or a stage without a Ci stack
            raise
        outputs = described.get("Outputs") or []
        found[name] = sorted((o["OutputKey"], o["OutputValue"], o.get("Description", "")) for o in outputs)
    return found


def render(found: dict[str, list[tuple[str, str, str]]], *, descriptions: bool) -> str:
    width = max((len(key) for outputs in found.values() for key, _, _ in outputs), default=0)
    lines = []
    for stack, outputs in found.items():
        lines.append(stack if outputs else f"{stack}  (no outputs)")
        for key, value, description in outputs:
            lines.append(f"  {key:<{width}}  {value}")
            if descriptions and description:
                lines.append(f"  {'':<{width}}  ({description})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stacks.outputs", description=__doc__)
    parser.add_argument("--env", required=True, choices=ENVIRONMENTS)
    parser.add_argument("--descriptions", action="store_true", help="what each output is for")
    parser.add_argument("--endpoint-url", help=argparse.SUPPRESS)  # the tests' emulator
    args = parser.parse_args(argv)

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    region = stage_region(args.env)
    try:
        cloudformation = boto3.client("cloudformation", region_name=region, endpoint_url=args.endpoint_url)
        found = stage_outputs(cloudformation, args.env)
    except (BotoCoreError, ClientError) as error:
        print(f"error: cannot read the {args.env} stage's stacks: {error}", file=sys.stderr)
        return 1
    if not found:
        where = f" in {region}" if region else ""
        print(
            f"error: no stack of the {args.env} stage is deployed{where} (README, Deploying)", file=sys.stderr
        )
        return 1
    print(render(found, descriptions=args.descriptions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
