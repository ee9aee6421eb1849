"""docs/architecture.md is what `make diagram` draws from the app: regenerated from the test
session's synthesis, it must be the committed file (so a change to the stacks that the diagram
would show fails here until `make diagram` is run)."""

import re
from pathlib import Path

from stacks.diagram import document, family, load

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"


def test_the_committed_diagram_is_the_one_the_app_draws(synth):
    assert DOC.read_text() == document(synth.outdir), "docs/architecture.md is stale: run `make diagram`"


def test_the_diagram_shows_every_stack_and_the_main_resources(synth):
    text = document(synth.outdir)
    for stack in synth.raw["dev"]:
        assert f'subgraph stack_{stack}["Dev/{stack}"]' in text
    for kind in ("VPC", "ECS cluster", "Fargate service", "load balancer", "DynamoDB table", "6 SQS queues",
                 "S3 bucket", "EFS file system", "7 ECR repositories", "6 secrets", "KMS key"):  # fmt: skip
        assert kind in text, kind
    # the control plane's references across stacks, drawn thick
    for target in ("Data_Dispatches", "Data_DispatchQueue_agent_", "Data_Secrets", "Registry_Repositories"):
        assert f"Fleet_ControlPlane ==> {target}" in text
    assert "Fleet_ControlPlane --> Fleet_Cluster" in text
    assert "Observability_Observability -.->|watches| stack_Fleet" in text
    assert "| Dev-Fleet | `ApiUrl` |" in text


def test_every_mermaid_node_is_declared_once_and_every_edge_joins_declared_ones(synth):
    body = document(synth.outdir).split("```mermaid\n", 1)[1].split("```", 1)[0]
    nodes = re.findall(r"^    (\w+)\[", body, flags=re.MULTILINE)
    subgraphs = re.findall(r"^  subgraph (\w+)\[", body, flags=re.MULTILINE)
    assert len(nodes) == len(set(nodes)) and body.count("\n  end\n") == len(subgraphs)
    for source, target in re.findall(r"^  (\w+) (?:-->|==>|-\.->\|\w+\|) (\w+)$", body, flags=re.MULTILINE):
        assert source in nodes and (target in nodes or target in subgraphs), (source, target)


def test_per_agent_constructs_are_one_box(synth):
    assert family("DispatchQueueClaude") == "DispatchQueue{agent}" and family("Claude") == "Claude"
    boxes = load(synth.outdir).boxes
    assert len(boxes[("Fleet", "Agent{agent}")].members) == len(synth.stages["dev"].config.agents)
