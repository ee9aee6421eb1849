"""The embedded emulator applies DynamoDB writes one at a time, as DynamoDB applies an item's
writes; without that, races that Outpost's conditional writes settle in AWS are lost at random
here (seen: two winners of one conditional update)."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3

from control_plane.store.codec import conditionally


def _client(service: str, endpoint: str):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")


def test_twenty_conditional_updates_of_one_item_have_exactly_one_winner(moto_endpoint: str) -> None:
    ddb = _client("dynamodb", moto_endpoint)
    table = f"race-{uuid.uuid4().hex[:8]}"
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for round_ in range(10):
        key = {"id": {"S": f"item-{round_}"}}
        ddb.put_item(TableName=table, Item={**key, "version": {"N": "1"}})
        barrier = threading.Barrier(20)

        def race(i: int, key=key, barrier=barrier) -> bool:
            barrier.wait()
            return conditionally(
                ddb.update_item,
                TableName=table,
                Key=key,
                UpdateExpression="SET version = :next, winner = :me",
                ConditionExpression="version = :expected",
                ExpressionAttributeValues={
                    ":next": {"N": "2"},
                    ":expected": {"N": "1"},
                    ":me": {"N": str(i)},
                },
            )

        with ThreadPoolExecutor(20) as pool:
            wins = [i for i, won in enumerate(pool.map(race, range(20))) if won]
        stored = ddb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
        assert len(wins) == 1, f"round {round_}: {len(wins)} writers passed one condition"
        assert stored["winner"] == {"N": str(wins[0])}


def test_a_long_poll_does_not_hold_up_dynamodb(moto_endpoint: str) -> None:
    sqs, ddb = _client("sqs", moto_endpoint), _client("dynamodb", moto_endpoint)
    queue = sqs.create_queue(QueueName=f"poll-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    poll = threading.Thread(target=sqs.receive_message, kwargs={"QueueUrl": queue, "WaitTimeSeconds": 3})
    poll.start()
    time.sleep(0.3)
    started = time.monotonic()
    ddb.list_tables()
    took = time.monotonic() - started
    assert poll.is_alive(), "the long poll should still be waiting"
    assert took < 2.0, f"a DynamoDB call waited {took:.1f} s behind an SQS long poll"
    poll.join()
