"""`make bench`'s harness: run.py's JSON document and goals, and the AWS request counter."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import boto3
from botocore.awsrequest import AWSResponse

from control_plane.aws_calls import AwsCallCounter
from tests.bench import run

MODULE = """
def main():
    return {
        "ddb_calls_per_dispatch": {"min": 7, "median": 9, "p99": 12, "n": 30},
        "api_dispatch_create_per_s": {"min": 40, "median": 55, "p99": 70, "n": 30, "value": 61.5},
        "warm_dispatch_to_running_p99_s": {"min": 0.1, "median": 0.2, "p99": 0.9, "n": 30},
        "breakdown": {"dynamodb.GetItem": 3},
    }
"""


def test_run_writes_every_figure_with_its_distribution_goal_and_machine(tmp_path: Path, capsys):
    name = f"bench_tiny_{uuid.uuid4().hex[:8]}"
    broken = f"bench_broken_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / f"{broken}.py").write_text("def main():\n    raise RuntimeError('no emulator')\n")
    output = tmp_path / "bench-results.json"

    code = run.main([], bench_dir=tmp_path, output=output)

    assert code == 1  # a module failed; the others' figures are still written
    report = json.loads(output.read_text())
    assert report["ddb_calls_per_dispatch"] == 9  # the median is the headline
    assert report["api_dispatch_create_per_s"] == 61.5  # unless the module names one
    assert report["warm_dispatch_to_running_p99_s"] == 0.9  # a p99 figure's headline is its p99
    assert report["details"]["ddb_calls_per_dispatch"] == {
        "min": 7, "median": 9, "p99": 12, "n": 30, "goal": "<= 8", "verdict": "MISS",
    }  # fmt: skip
    assert report["goals"]["api_dispatch_create_per_s"]["verdict"] == "PASS"
    assert report["goals"]["runtask_calls_per_dispatch"]["verdict"] == "MISSING"
    assert report["extras"][name] == {"breakdown": {"dynamodb.GetItem": 3}}
    assert report["modules"][broken]["error"] == "RuntimeError: no emulator"
    assert set(report["machine"]) >= {"cores", "cpu_model", "python", "date", "git_commit"}
    assert len(report["machine"]["git_commit"]) == 40
    table = capsys.readouterr().out
    assert "ddb_calls_per_dispatch" in table and "<= 8      MISS" in table
    assert "runtask_calls_per_dispatch" in table and "MISSING" in table


def test_the_counter_counts_each_request_a_client_sends(moto_endpoint: str):
    def client(service: str):
        return boto3.client(service, endpoint_url=moto_endpoint, region_name="us-east-1",
                            aws_access_key_id="k", aws_secret_access_key="s")  # fmt: skip

    dynamodb, sqs, unwatched = client("dynamodb"), client("sqs"), client("sqs")
    counter = AwsCallCounter().watch(dynamodb, sqs)
    table = f"count-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for n in range(3):
        dynamodb.put_item(TableName=table, Item={"k": {"S": str(n)}})
    dynamodb.get_item(TableName=table, Key={"k": {"S": "1"}})
    url = sqs.create_queue(QueueName=f"count-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    unwatched.send_message(QueueUrl=url, MessageBody="not counted")

    # a call answered before it is sent (failure injection) is no request
    def answered(**_):
        return AWSResponse(url, 200, {}, None), {"Messages": []}

    sqs.meta.events.register("before-call.sqs.ReceiveMessage", answered)
    sqs.receive_message(QueueUrl=url)

    assert counter.snapshot() == {
        ("dynamodb", "CreateTable"): 1,
        ("dynamodb", "PutItem"): 3,
        ("dynamodb", "GetItem"): 1,
        ("sqs", "CreateQueue"): 1,
    }
    assert counter.by_service() == {"dynamodb": 5, "sqs": 1}
