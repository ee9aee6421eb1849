"""`make diagram`: docs/architecture.md, drawn from a synthesis of the app (never by hand).

It reads a cloud assembly (``cdk synth`` output): the construct tree (tree.json) for which
construct owns each resource, and the Dev stage's templates for what refers to what.

- One box per construct directly in a stack, listing the main resources it holds; the
  constructs made once per agent (``AgentClaude``, ``DispatchQueueClaude``, ...) are one box.
- An arrow A → B when A's resources name B's (a Ref, a GetAtt, an ARN in a policy...): thin
  inside a stack, thick across stacks (a CloudFormation export and its import).
- Keys get no arrows (everything encrypted would point at them): their box lists their users.
- The Observability stack, which only watches the others, is one box with a dotted line to
  each stack it watches.

The output is deterministic: tests/infra/test_diagram.py renders the test session's synthesis
and compares it with the committed file, so the document cannot go stale.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.registry import AGENTS

STAGE = "Dev"
SUMMARIZED = ("Observability",)  # stacks drawn as one box: they watch, nothing depends on them
KEY_TYPE = "AWS::KMS::Key"
# What a box says about its resources: the main kinds, by CloudFormation type.
KINDS = {
    "AWS::EC2::VPC": "VPC",
    "AWS::EC2::Subnet": "subnet",
    "AWS::EC2::NatGateway": "NAT gateway",
    "AWS::EC2::InternetGateway": "internet gateway",
    "AWS::EC2::FlowLog": "flow log",
    "AWS::EC2::VPCEndpoint": "VPC endpoint",
    "AWS::EC2::SecurityGroup": "security group",
    "AWS::Route53Resolver::FirewallRuleGroup": "DNS Firewall rule group",
    "AWS::Route53Resolver::FirewallDomainList": "domain list",
    "AWS::KMS::Key": "KMS key",
    "AWS::DynamoDB::GlobalTable": "DynamoDB table",
    "AWS::DynamoDB::Table": "DynamoDB table",
    "AWS::S3::Bucket": "S3 bucket",
    "AWS::EFS::FileSystem": "EFS file system",
    "AWS::EFS::AccessPoint": "EFS access point",
    "AWS::SQS::Queue": "SQS queue",
    "AWS::SecretsManager::Secret": "secret",
    "AWS::Backup::BackupVault": "backup vault",
    "AWS::Backup::BackupPlan": "backup plan",
    "AWS::ECR::Repository": "ECR repository",
    "AWS::ECS::Cluster": "ECS cluster",
    "AWS::ECS::TaskDefinition": "task definition",
    "AWS::ECS::Service": "Fargate service",
    "AWS::ElasticLoadBalancingV2::LoadBalancer": "load balancer",
    "AWS::ElasticLoadBalancingV2::Listener": "listener",
    "AWS::ElasticLoadBalancingV2::TargetGroup": "target group",
    "AWS::WAFv2::WebACL": "web ACL",
    "AWS::ApplicationAutoScaling::ScalableTarget": "autoscaling target",
    "AWS::ServiceDiscovery::PrivateDnsNamespace": "Cloud Map namespace",
    "AWS::ServiceDiscovery::Service": "Cloud Map service",
    "AWS::Events::Rule": "EventBridge rule",
    "AWS::CloudTrail::Trail": "CloudTrail trail",
    "AWS::CloudWatch::Alarm": "alarm",
    "AWS::CloudWatch::CompositeAlarm": "composite alarm",
    "AWS::CloudWatch::Dashboard": "dashboard",
    "AWS::SNS::Topic": "SNS topic",
    "AWS::Logs::LogGroup": "log group",
    "AWS::IAM::Role": "IAM role",
    "AWS::IAM::ManagedPolicy": "managed policy",
}
# Parts of the kinds above, not worth a word in a box (any other type is named as it is).
MINOR = frozenset(
    {
        "AWS::EC2::EIP",
        "AWS::EC2::Route",
        "AWS::EC2::RouteTable",
        "AWS::EC2::SubnetRouteTableAssociation",
        "AWS::EC2::VPCGatewayAttachment",
        "AWS::EC2::SecurityGroupIngress",
        "AWS::EC2::SecurityGroupEgress",
        "AWS::EFS::MountTarget",
        "AWS::S3::BucketPolicy",
        "AWS::SQS::QueuePolicy",
        "AWS::SNS::TopicPolicy",
        "AWS::SNS::Subscription",
        "AWS::IAM::Policy",
        "AWS::Backup::BackupSelection",
        "AWS::ECS::ClusterCapacityProviderAssociations",
        "AWS::ElasticLoadBalancingV2::ListenerRule",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        "AWS::WAFv2::WebACLAssociation",
        "AWS::Route53Resolver::FirewallRuleGroupAssociation",
        "AWS::WAFv2::LoggingConfiguration",
        "AWS::Lambda::Function",
        "AWS::CDK::Metadata",
    }
)
_SUB_REFERENCE = re.compile(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}")


@dataclass(eq=False)  # one box is one node: compared by identity
class Box:
    stack: str
    name: str  # the construct's id, or "Agent{agent}" for a family
    members: list[str] = field(default_factory=list)  # the constructs it stands for
    types: Counter[str] = field(default_factory=Counter)

    @property
    def id(self) -> str:
        return re.sub(r"\W", "_", f"{self.stack}_{self.name}")

    @property
    def is_key(self) -> bool:
        return set(self.types) == {KEY_TYPE}


@dataclass
class Stage:
    stacks: list[str]
    boxes: dict[tuple[str, str], Box]  # (stack, box name) -> box, in construct order
    owner: dict[tuple[str, str], Box]  # (stack, logical id) -> the box holding the resource
    templates: dict[str, dict[str, Any]]
    stack_names: dict[str, str]  # stack id -> CloudFormation stack name


def family(construct_id: str) -> str:
    """``DispatchQueueClaude`` -> ``DispatchQueue{agent}``: the constructs made once per agent."""
    for agent in AGENTS:
        suffix = agent.capitalize()
        if construct_id.endswith(suffix) and construct_id != suffix:
            return construct_id.removesuffix(suffix) + "{agent}"
    return construct_id


def _resources(node: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(logical id, type) of every CloudFormation resource under a construct-tree node."""
    attributes = node.get("attributes") or {}
    if "aws:cdk:cloudformation:type" in attributes:
        yield attributes["aws:cdk:cloudformation:logicalId"], attributes["aws:cdk:cloudformation:type"]
    for child in (node.get("children") or {}).values():
        yield from _resources(child)


def load(assembly: Path, stage: str = STAGE) -> Stage:
    tree = json.loads((assembly / "tree.json").read_text())["tree"]["children"][stage]["children"]
    nested = assembly / f"assembly-{stage}"
    manifest = json.loads((nested / "manifest.json").read_text())
    templates, stack_names = {}, {}
    for artifact in manifest["artifacts"].values():
        if artifact["type"] == "aws:cloudformation:stack":
            stack = artifact["displayName"].split("/", 1)[1]
            templates[stack] = json.loads((nested / artifact["properties"]["templateFile"]).read_text())
            stack_names[stack] = artifact["properties"].get("stackName", stack)
    stacks = [s for s in tree if s in templates]  # construct order (stacks/stage.py)
    boxes: dict[tuple[str, str], Box] = {}
    owner: dict[tuple[str, str], Box] = {}
    for stack in stacks:
        for construct_id, node in tree[stack]["children"].items():
            resources = list(_resources(node))
            if not resources:  # imports, exports, parameters: nothing deployed
                continue
            name = stack if stack in SUMMARIZED else family(construct_id)
            box = boxes.setdefault((stack, name), Box(stack, name))
            box.members.append(construct_id)
            for logical_id, type_ in resources:
                box.types[type_] += 1
                owner[(stack, logical_id)] = box
    return Stage(stacks, boxes, owner, templates, stack_names)


def _references(value: Any) -> Iterator[tuple[str, str]]:
    """("ref", logical id) and ("import", export name) in a template fragment."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                yield "ref", inner
            elif key == "Fn::GetAtt":
                yield "ref", inner[0] if isinstance(inner, list) else inner.split(".")[0]
            elif key == "Fn::ImportValue" and isinstance(inner, str):
                yield "import", inner
            elif key == "Fn::Sub":
                template = inner[0] if isinstance(inner, list) else inner
                for match in _SUB_REFERENCE.finditer(template):
                    yield "ref", match.group(1)
                yield from _references(inner[1:] if isinstance(inner, list) else [])
            else:
                yield from _references(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _references(inner)


@dataclass(frozen=True)
class Import:
    consumer: str  # stack
    producer: Box
    attribute: str  # "Ref" or the GetAtt attribute


def links(stage: Stage) -> tuple[set[tuple[Box, Box]], list[Import]]:
    """The references between boxes, and every import with what it imports."""
    exports: dict[str, tuple[str, str, str]] = {}  # export name -> (stack, logical id, attribute)
    for stack, template in stage.templates.items():
        for output in (template.get("Outputs") or {}).values():
            if "Export" not in output:
                continue
            value = output["Value"]
            logical_id, attribute = (
                (value["Ref"], "Ref") if "Ref" in value else (value["Fn::GetAtt"][0], value["Fn::GetAtt"][1])
            )
            exports[output["Export"]["Name"]] = (stack, logical_id, attribute)
    edges: set[tuple[Box, Box]] = set()
    imports: list[Import] = []
    for stack, template in stage.templates.items():
        for logical_id, resource in template["Resources"].items():
            source = stage.owner.get((stack, logical_id))
            if source is None:  # a CDK helper outside any construct of ours
                continue
            for kind, name in _references(resource.get("Properties", {})):
                if kind == "ref":
                    target = stage.owner.get((stack, name))
                elif name in exports:
                    producer_stack, producer_id, attribute = exports[name]
                    target = stage.owner.get((producer_stack, producer_id))
                    if target is not None:
                        imports.append(Import(stack, target, attribute))
                else:
                    target = None
                if target is not None and target is not source:
                    edges.add((source, target))
    return edges, imports


def _plural(kind: str, count: int) -> str:
    if count == 1:
        return kind
    if kind.endswith("y") and not kind.endswith(("ay", "ey")):
        return f"{count} {kind[:-1]}ies"
    return f"{count} {kind}s" if not kind.endswith("s") else f"{count} {kind}"


def _summary(types: Counter[str]) -> list[str]:
    known = [(KINDS[t], n) for t, n in types.items() if t in KINDS]
    other = [(t.removeprefix("AWS::"), n) for t, n in types.items() if t not in KINDS and t not in MINOR]
    merged: Counter[str] = Counter()
    for kind, count in known + other:
        merged[kind] += count
    order = {kind: i for i, kind in enumerate(dict.fromkeys([*KINDS.values(), *(k for k, _ in other)]))}
    return [_plural(kind, merged[kind]) for kind in sorted(merged, key=lambda k: order[k])]


def _lines(words: Sequence[str], width: int = 48) -> list[str]:
    """Words joined with ", " into lines of about ``width`` characters."""
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 2 + len(word) <= width:
            lines[-1] += f", {word}"
        else:
            lines.append(word)
    return lines


def _label(box: Box, users: Sequence[str]) -> str:
    title = box.name
    if len(box.members) > 1 and "{agent}" in box.name:
        title = f"{box.name} ×{len(box.members)}"
    lines = [f"<b>{title}</b>", *_lines(_summary(box.types))]
    if users:
        lines += _lines([f"used by {users[0]}", *users[1:]])
    return "<br/>".join(lines)


def mermaid(stage: Stage) -> str:
    edges, _ = links(stage)
    order = {box.id: i for i, box in enumerate(stage.boxes.values())}

    def key(edge: tuple[Box, Box]) -> tuple[int, int]:
        return order[edge[0].id], order[edge[1].id]

    users: dict[str, list[str]] = defaultdict(list)
    watched: dict[str, set[str]] = defaultdict(set)
    drawn: list[tuple[Box, Box]] = []
    for source, target in sorted(edges, key=key):
        if source.stack in SUMMARIZED:
            if target.stack != source.stack:
                watched[source.id].add(target.stack)
        elif target.is_key:
            users[target.id].append(
                source.name if source.stack == target.stack else f"{source.stack}/{source.name}"
            )
        else:
            drawn.append((source, target))

    out = ["flowchart LR"]
    for stack in stage.stacks:
        out.append(f'  subgraph stack_{stack}["{STAGE}/{stack}"]')
        for box in (b for b in stage.boxes.values() if b.stack == stack):
            out.append(f'    {box.id}["{_label(box, users[box.id])}"]')
        out.append("  end")
    for source, target in drawn:
        arrow = "-->" if source.stack == target.stack else "==>"
        out.append(f"  {source.id} {arrow} {target.id}")
    for box_id in sorted(watched, key=lambda i: order[i]):
        for stack in (s for s in stage.stacks if s in watched[box_id]):
            out.append(f"  {box_id} -.->|watches| stack_{stack}")
    return "\n".join(out)


def import_table(stage: Stage) -> list[str]:
    _, imports = links(stage)
    by_pair: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for item in imports:
        attribute = {"Ref": "name or id"}.get(item.attribute, item.attribute)
        by_pair[(item.consumer, item.producer.stack)][item.producer.name].add(attribute)
    rows = ["| stack | imports from | what (construct: attribute) |", "|---|---|---|"]
    position = {stack: i for i, stack in enumerate(stage.stacks)}
    order = {box.name: i for i, box in enumerate(stage.boxes.values())}
    for consumer, producer in sorted(by_pair, key=lambda p: (position[p[0]], position[p[1]])):
        what = by_pair[(consumer, producer)]
        items = [f"{name}: {', '.join(sorted(what[name]))}" for name in sorted(what, key=lambda n: order[n])]
        rows.append(f"| {STAGE}/{consumer} | {STAGE}/{producer} | {'; '.join(items)} |")
    return rows


def output_table(stage: Stage) -> list[str]:
    rows = ["| stack | output | what it is |", "|---|---|---|"]
    for stack in stage.stacks:
        for key, output in (stage.templates[stack].get("Outputs") or {}).items():
            if "Export" in output:  # CDK's own, for the imports above
                continue
            description = output.get("Description", "")
            for raw, escaped in (("|", "\\|"), ("<", "&lt;"), (">", "&gt;")):
                description = description.replace(raw, escaped)
            rows.append(f"| {stage.stack_names[stack]} | `{key}` | {description} |")
    return rows


def document(assembly: Path, stage_name: str = STAGE) -> str:
    stage = load(assembly, stage_name)
    return "\n".join(
        [
            "# Architecture",
            "",
            "<!-- Generated by `make diagram` (stacks/diagram.py) from a synthesis of the app: do not edit. -->",
            "",
            f"The {STAGE} stage as `cdk synth` builds it: its stacks, the constructs in each with the",
            "main resources they hold (the constructs made once per agent drawn as one box), and what",
            "refers to what. An arrow A → B means that A's resources name B's (a Ref, an attribute, an ARN",
            "in a policy): thin inside a stack, thick across stacks (an export and its import, the order",
            "stacks must deploy in). Keys have no arrows: each key's box lists who uses it. Staging and",
            "prod have the same stacks; what differs is their settings (README, Configuration).",
            "",
            "```mermaid",
            mermaid(stage),
            "```",
            "",
            "## Cross-stack references",
            "",
            *import_table(stage),
            "",
            "## Stack outputs",
            "",
            "What `make outputs ENV=dev` prints once the stage is deployed (README, Deploying).",
            "",
            *output_table(stage),
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stacks.diagram", description=__doc__)
    parser.add_argument("assembly", type=Path, help="a cdk synth output directory with the Dev stage")
    parser.add_argument("--output", type=Path, help="the file to write (default: standard output)")
    args = parser.parse_args(argv)
    text = document(args.assembly)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
