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


def _table(ddb, name: str) -> str:
    table = f"{name}-{uuid.uuid4().hex[:8]}"
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return table


def test_twenty_conditional_updates_of_one_item_have_exactly_one_winner(moto_endpoint: str) -> None:
    ddb = _client("dynamodb", moto_endpoint)
    table = _table(ddb, "race")
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


def _item(ddb, table: str, key: str) -> dict | None:
    return ddb.get_item(TableName=table, Key={"id": {"S": key}}, ConsistentRead=True).get("Item")


def _cancelled(ddb, items: list[dict]) -> list[str]:
    try:
        ddb.transact_write_items(TransactItems=items)
    except ddb.exceptions.TransactionCanceledException as error:
        return [reason["Code"] for reason in error.response["CancellationReasons"]]
    raise AssertionError("the transaction was written")


def test_a_transaction_cancelled_by_a_later_condition_changes_nothing(moto_endpoint: str) -> None:
    """The emulator saves only the items a transaction touches (control_plane.emulator_dynamodb):
    a put, an update and a delete made before the failing condition are all undone."""
    ddb = _client("dynamodb", moto_endpoint)
    table, other = _table(ddb, "tx"), _table(ddb, "tx-other")
    ddb.put_item(TableName=table, Item={"id": {"S": "counter"}, "n": {"N": "1"}})
    ddb.put_item(TableName=other, Item={"id": {"S": "doomed"}, "v": {"S": "kept"}})
    ddb.put_item(TableName=other, Item={"id": {"S": "slot"}, "used": {"N": "3"}, "max": {"N": "3"}})
    reasons = _cancelled(
        ddb,
        [
            {"Put": {"TableName": table, "Item": {"id": {"S": "new"}}, "ConditionExpression": "attribute_not_exists(id)"}},
            {"Update": {"TableName": table, "Key": {"id": {"S": "counter"}}, "UpdateExpression": "ADD n :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}},
            {"Delete": {"TableName": other, "Key": {"id": {"S": "doomed"}}}},
            {"Update": {"TableName": other, "Key": {"id": {"S": "slot"}}, "UpdateExpression": "ADD used :one", "ConditionExpression": "used < #m", "ExpressionAttributeNames": {"#m": "max"}, "ExpressionAttributeValues": {":one": {"N": "1"}}}},
        ],
    )  # fmt: skip
    assert reasons == ["None", "None", "None", "ConditionalCheckFailed"]
    assert _item(ddb, table, "new") is None
    assert _item(ddb, table, "counter") == {"id": {"S": "counter"}, "n": {"N": "1"}}
    assert _item(ddb, other, "doomed") == {"id": {"S": "doomed"}, "v": {"S": "kept"}}
    assert _item(ddb, other, "slot")["used"] == {"N": "3"}


def test_a_transaction_failing_inside_a_write_is_undone_and_a_good_one_is_written(moto_endpoint: str) -> None:
    ddb = _client("dynamodb", moto_endpoint)
    table = _table(ddb, "tx-error")
    ddb.put_item(TableName=table, Item={"id": {"S": "text"}, "v": {"S": "not a number"}})
    first = {"Put": {"TableName": table, "Item": {"id": {"S": "first"}, "v": {"N": "1"}}}}
    adding_to_text = {
        "Update": {
            "TableName": table,
            "Key": {"id": {"S": "text"}},
            "UpdateExpression": "ADD v :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
    }
    twice = {"Update": {**adding_to_text["Update"], "Key": {"id": {"S": "first"}}}}
    for refused in ([first, adding_to_text], [first, twice]):  # a wrong type; one item twice
        try:
            ddb.transact_write_items(TransactItems=refused)
        except ddb.exceptions.ClientError as error:
            assert error.response["Error"]["Code"] == "ValidationException"
        else:
            raise AssertionError(f"accepted: {refused}")
        assert _item(ddb, table, "first") is None
        assert _item(ddb, table, "text")["v"] == {"S": "not a number"}

    ddb.transact_write_items(
        TransactItems=[first, {"ConditionCheck": {"TableName": table, "Key": {"id": {"S": "text"}}, "ConditionExpression": "attribute_exists(v)"}}]
    )  # fmt: skip
    assert _item(ddb, table, "first") == {"id": {"S": "first"}, "v": {"N": "1"}}


def test_a_failed_condition_can_return_the_item_it_failed_on(moto_endpoint: str) -> None:
    ddb = _client("dynamodb", moto_endpoint)
    table = _table(ddb, "tx-old")
    ddb.put_item(TableName=table, Item={"id": {"S": "taken"}, "owner": {"S": "someone"}})
    try:
        ddb.transact_write_items(
            TransactItems=[{"Put": {"TableName": table, "Item": {"id": {"S": "taken"}}, "ConditionExpression": "attribute_not_exists(id)", "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}]
        )  # fmt: skip
    except ddb.exceptions.TransactionCanceledException as error:
        assert error.response["CancellationReasons"][0]["Item"]["owner"] == {"S": "someone"}
    else:
        raise AssertionError("the put over an existing item was written")


def test_queries_answer_and_count_items_without_exposing_the_stored_ones(moto_endpoint: str) -> None:
    """The emulator answers a Query with the matched items themselves, not copies: a projection
    or a count must still leave the stored items whole."""
    ddb = _client("dynamodb", moto_endpoint)
    table = _table(ddb, "query")
    for i in range(30):
        ddb.put_item(TableName=table, Item={"id": {"S": f"k{i}"}, "a": {"S": "x"}, "b": {"N": str(i)}})
    reply = ddb.query(
        TableName=table, KeyConditionExpression="id = :k", ExpressionAttributeValues={":k": {"S": "k7"}},
        ProjectionExpression="a",
    )  # fmt: skip
    assert reply["Items"] == [{"a": {"S": "x"}}]
    counted = ddb.query(
        TableName=table, KeyConditionExpression="id = :k", ExpressionAttributeValues={":k": {"S": "k7"}},
        Select="COUNT",
    )  # fmt: skip
    assert counted["Count"] == 1 and "Items" not in counted
    assert _item(ddb, table, "k7") == {"id": {"S": "k7"}, "a": {"S": "x"}, "b": {"N": "7"}}
