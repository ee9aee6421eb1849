"""Two of moto's DynamoDB costs that grew with the table, removed for the embedded emulator.

- Transactions: moto 5.2.5 makes a transaction undoable by deep-copying every table it touches
  before it starts, so each TransactWriteItems cost time in proportion to the whole table (with
  a few thousand dispatches, the copy was most of a dispatch's creation, and the API's
  throughput fell as the table filled). `transact_write_items` keeps moto's semantics (the same
  checks, errors and cancellation reasons, each write applied by moto's own put, update and
  delete) and saves only the items the transaction touches, one copy each, to put back on failure.
- Queries: moto deep-copies every item a Query matches before answering, even for
  `Select=COUNT`, so counting a tenant's backlog copied the backlog. The copy guards the stored
  items against changes while the answer is built; here no change can happen meanwhile, so the
  matched items are answered as they are.

Both rest on the emulator applying DynamoDB requests one at a time, answer included
(control_plane.emulator.SerializedDynamoDB), as DynamoDB isolates a transaction's items.
"""

from __future__ import annotations

import copy
from typing import Any

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models import table as table_module
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table

Saved = tuple[Table, DynamoType, DynamoType | None, Item | None]


def _restore(saved: list[Saved]) -> None:
    """Put every touched item back as it was, the last change first."""
    for table, hash_value, range_value, item in reversed(saved):
        if range_value is not None:
            if item is None:
                table.items[hash_value].pop(range_value, None)
            else:
                table.items[hash_value][range_value] = item
        elif item is None:
            table.items.pop(hash_value, None)
        else:
            table.items[hash_value] = item  # type: ignore[assignment]  # as moto itself stores it


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    saved: list[Saved] = []
    targets: set[tuple[str, str]] = set()
    errors: list[tuple[str | None, str | None, dict[str, Any] | None]] = []
    for entry in transact_items:
        if len(entry) > 1:
            raise TransactWriteSingleOpException
        original_item: dict[str, Any] | None = None
        try:
            op_type, op = next(iter(entry.items()))
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                raise ValueError("Unsupported transaction operation")
            table_name = op["TableName"]
            table = self.get_table(table_name)
            if op_type == "Put":
                attrs = op["Item"]
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op["Key"]
            target = (str(table_name), str(dict(sorted(key.items()))))
            if target in targets:
                raise MultipleTransactionsException()
            targets.add(target)

            names = op.get("ExpressionAttributeNames")
            values = op.get("ExpressionAttributeValues")
            condition = op.get("ConditionExpression")
            current = self.get_item(table_name, key)
            if condition is not None and not get_filter_expression(condition, names, values).expr(current):
                if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                    original_item = current.to_json()["Attributes"]
                raise ConditionalCheckFailed(item=original_item)
            if op_type == "ConditionCheck":
                errors.append((None, None, None))
                continue

            hash_value = DynamoType(key[table.hash_key_attr])
            range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
            saved.append((table, hash_value, range_value, copy.deepcopy(current)))
            conditions = {
                "condition_expression": condition,
                "expression_attribute_names": names,
                "expression_attribute_values": values,
            }
            if op_type == "Put":
                self.put_item(table_name, op["Item"], **conditions)
            elif op_type == "Delete":
                self.delete_item(table_name, key, **conditions)
            else:
                self.update_item(table_name, key, update_expression=op["UpdateExpression"], **conditions)
            errors.append((None, None, None))
        except (MultipleTransactionsException, MockValidationException):
            _restore(saved)
            raise
        except ConditionalCheckFailed as error:
            errors.append(("ConditionalCheckFailed", str(error.message), original_item))
        except Exception as error:  # as moto: any other failure cancels the transaction with its name
            errors.append((type(error).__name__, str(error), original_item))
    if any(code is not None for code, _, _ in errors):
        _restore(saved)
        raise TransactionCanceledException(errors)


class _QueryCopy:
    """Stands for the `copy` module in moto's table module: a list of matched items (a Query's
    answer) is passed on as it is; every other copy there (backups, restores) stays deep."""

    copy = staticmethod(copy.copy)

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        if isinstance(value, list) and all(isinstance(item, Item) for item in value):
            return list(value)
        return copy.deepcopy(value, memo)


def install() -> None:
    """Put both changes into this process's moto."""
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    table_module.copy = _QueryCopy  # type: ignore[assignment]
