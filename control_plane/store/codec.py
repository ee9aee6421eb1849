"""DynamoDB attribute-value encoding for plain Python values (the low-level client speaks it)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [_from_dynamo(v) for v in value]
    return value


def encode(value: Any) -> dict:
    return _serializer.serialize(_to_dynamo(value))


def encode_item(item: dict[str, Any]) -> dict[str, dict]:
    """Encode an item, leaving out None values (DynamoDB keys and indexes dislike NULL)."""
    return {k: encode(v) for k, v in item.items() if v is not None}


def update_expression(
    updates: dict[str, Any], *, names: dict[str, str], values: dict[str, Any], sets: tuple[str, ...] = ()
) -> str:
    """A SET/REMOVE expression for `updates` (None removes the attribute).

    Adds the placeholders it uses to `names` and `values`; `sets` are extra SET clauses the
    caller has already named.
    """
    assignments, removes = list(sets), []
    for i, (name, value) in enumerate(updates.items()):
        names[f"#f{i}"] = name
        if value is None:
            removes.append(f"#f{i}")
        else:
            assignments.append(f"#f{i} = :v{i}")
            values[f":v{i}"] = encode(value)
    return "SET " + ", ".join(assignments) + (" REMOVE " + ", ".join(removes) if removes else "")


def decode_item(item: dict[str, dict]) -> dict[str, Any]:
    return {k: _from_dynamo(_deserializer.deserialize(v)) for k, v in item.items()}


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Fixed-width UTC timestamps, so that string order is time order (index sort keys)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def batch_get(
    client: Any,
    table: str,
    *,
    key: str,
    values: list[str],
    consistent: bool = False,
    projection: str | None = None,
) -> list[dict[str, Any]]:
    """The items of `table` whose hash key `key` is one of `values`, decoded, in as few
    BatchGetItem requests as DynamoDB allows (100 keys each), unprocessed keys asked again."""
    items: list[dict[str, Any]] = []
    for start in range(0, len(values), 100):
        request: dict[str, Any] = {"Keys": [{key: encode(v)} for v in values[start : start + 100]]}
        if consistent:
            request["ConsistentRead"] = True
        if projection:
            request["ProjectionExpression"] = projection
        pending: dict[str, Any] = {table: request}
        while pending:
            reply = client.batch_get_item(RequestItems=pending)
            items.extend(decode_item(i) for i in reply.get("Responses", {}).get(table, []))
            pending = reply.get("UnprocessedKeys") or {}
    return items


def conditionally(write: Callable[..., object], **request: Any) -> bool:
    """Makes one conditional DynamoDB write; False when its condition did not hold."""
    try:
        write(**request)
    except Exception as error:
        if is_condition_failure(error):
            return False
        raise
    return True


def transactionally(client: Any, items: list[dict[str, Any]], *, attempts: int = 5) -> bool:
    """Makes one DynamoDB transaction; False when one of its conditions did not hold."""
    return failed_conditions(client, items, attempts=attempts) is None


def failed_conditions(client: Any, items: list[dict[str, Any]], *, attempts: int = 5) -> list[bool] | None:
    """Makes one DynamoDB transaction: None when it was written, else for each of `items`
    whether its condition failed (all False: it kept conflicting with other transactions).

    A transaction cancelled only because another transaction touched one of its items at the
    same moment (TransactionConflict) changed nothing and is tried again: the caller asked for
    a decision on the conditions, not on timing.
    """
    failed = [False] * len(items)
    for attempt in range(attempts):
        try:
            client.transact_write_items(TransactItems=items)
            return None
        except Exception as error:
            if not is_condition_failure(error):
                raise
            reasons = [r.get("Code") for r in getattr(error, "response", {}).get("CancellationReasons", [])]
            if "TransactionConflict" not in reasons or "ConditionalCheckFailed" in reasons:
                return [code == "ConditionalCheckFailed" for code in reasons] or [True] * len(items)
            time.sleep(random.uniform(0, 0.02 * 2**attempt))  # noqa: S311 - jitter, not security
    return failed


def is_condition_failure(error: Exception) -> bool:
    code = getattr(error, "response", {}).get("Error", {}).get("Code")
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")
