"""Agent-task records and leases, kept in the dispatches table beside the dispatches.

Items (auxiliary keys, like the store's ``idem#`` and ``stat#`` items; never read by the API):

- ``task#<task_id>``: one agent task. ``status`` is ``task#<agent>#<state>`` so that the
  table's ``by-status`` index lists an agent's tasks in one state, oldest first. States:
  ``unclaimed`` (starting or idle: what the warm pool counts), ``claiming`` (a claim is being
  written), ``claimed`` (serving one job), ``stopping`` (Outpost asked the runtime to stop it),
  ``stopped`` (gone; the item expires a day later). Also: the hash of the one-time claim
  token, the hashes of the job token and of the model gateway's token, the runtime's
  reference (ECS task ARN), the job it serves, and the version of the newest task-state event
  applied (events arrive out of order).
- ``taskref#<runtime ref>``: the task id for an ECS task ARN (events name tasks by ARN).
- ``lease#<name>``: a lease (owner, until) for work that must run once across replicas.

Every state change is a conditional write, so two control-plane replicas cannot both claim
with one token, both bind a task to two jobs, or both hold a lease.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from control_plane.store.codec import (
    batch_get,
    conditionally,
    decode_item,
    encode,
    iso,
    now,
)
from control_plane.store.dispatches import DispatchRecord

UNCLAIMED = "unclaimed"
CLAIMING = "claiming"
CLAIMED = "claimed"
STOPPING = "stopping"
STOPPED = "stopped"
LIVE_STATES = (UNCLAIMED, CLAIMING, CLAIMED, STOPPING)
STOPPED_TTL = timedelta(days=1)


def new_task_id(client_token: str | None = None) -> str:
    """A task id; derived from the launch's client token when there is one, so that two
    attempts to record the same launch collide on one item."""
    if client_token:
        return "t-" + hashlib.sha256(client_token.encode()).hexdigest()[:24]
    return "t-" + uuid.uuid4().hex[:24]


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def make_token(task_id: str) -> tuple[str, str]:
    """A bearer token ``<task id>.<secret>`` and the hash stored for it."""
    secret = secrets.token_urlsafe(32)
    return f"{task_id}.{secret}", _hash(secret)


def split_token(token: str) -> tuple[str, str] | None:
    task_id, sep, secret = token.partition(".")
    if not sep or not task_id.startswith("t-") or len(task_id) > 40 or not secret:
        return None
    return task_id, secret


def token_key(token: str) -> str:
    """What a cache of tokens keys by: never the token itself."""
    return _hash(token)


def token_matches(secret: str, stored_hash: str | None) -> bool:
    return bool(stored_hash) and hmac.compare_digest(_hash(secret), stored_hash or "")


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    agent: str
    state: str
    created_at: str
    updated_at: str | None = None
    launched_for: str = "warm"  # "warm", or "<dispatch id>#<attempt>" for a launch for a queued job
    client_token: str = ""
    token_hash: str | None = None
    job_token_hash: str | None = None
    gateway_token_hash: str | None = None  # the model gateway's token for the job's attempt
    runtime_ref: str | None = None
    capacity: str | None = None
    job: str | None = None  # the dispatch it claimed
    job_attempt: int | None = None
    claimed_at: str | None = None
    job_token_used: bool = False  # the runner has called with its job token: the claim arrived
    stop_reason: str | None = None
    event_version: int = 0
    version: int = 1

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> TaskRecord:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in item.items() if k in known})


class TaskStore:
    def __init__(self, *, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    # -- reads -------------------------------------------------------------------------------

    def get(self, task_id: str) -> TaskRecord | None:
        reply = self._client.get_item(
            TableName=self._table, Key={"dispatch_id": encode(f"task#{task_id}")}, ConsistentRead=True
        )
        return TaskRecord.from_item(decode_item(reply["Item"])) if "Item" in reply else None

    def get_with_job(self, task_id: str, dispatch_id: str) -> tuple[TaskRecord | None, DispatchRecord | None]:
        """The task and a dispatch, read consistently in one request: checking a job token needs
        both on every runner request (logs, uploads, result)."""
        task_key = f"task#{task_id}"
        keys = [task_key] + ([dispatch_id] if dispatch_id.startswith("d-") else [])
        read = batch_get(self._client, self._table, key="dispatch_id", values=keys, consistent=True)
        items = {item["dispatch_id"]: item for item in read}
        task = TaskRecord.from_item(items[task_key]) if task_key in items else None
        record = DispatchRecord.from_item(items[dispatch_id]) if dispatch_id in items else None
        return task, record

    def by_ref(self, runtime_ref: str) -> TaskRecord | None:
        reply = self._client.get_item(
            TableName=self._table, Key={"dispatch_id": encode(f"taskref#{runtime_ref}")}, ConsistentRead=True
        )
        if "Item" not in reply:
            return self.get(runtime_ref) if runtime_ref.startswith("t-") else None
        return self.get(decode_item(reply["Item"])["task_id"])

    def in_state(self, agent: str, state: str) -> list[TaskRecord]:
        """An agent's tasks in one state, oldest first (index read: may lag a moment)."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "by-status",
            "KeyConditionExpression": "#s = :s",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":s": encode(f"task#{agent}#{state}")},
        }
        records: list[TaskRecord] = []
        while True:
            reply = self._client.query(**kwargs)
            records.extend(TaskRecord.from_item(decode_item(i)) for i in reply.get("Items", []))
            if "LastEvaluatedKey" not in reply:
                return records
            kwargs["ExclusiveStartKey"] = reply["LastEvaluatedKey"]

    def live(self, agents: list[str]) -> list[TaskRecord]:
        return [t for agent in agents for state in LIVE_STATES for t in self.in_state(agent, state)]

    # -- writes ------------------------------------------------------------------------------

    def create(
        self, *, task_id: str, agent: str, launched_for: str, client_token: str, token_hash: str
    ) -> TaskRecord | None:
        """Record a task about to be launched, and return it (as a read would: the caller needs
        no read of its own); None if that launch is already recorded."""
        at = iso(now())
        item = {
            "dispatch_id": f"task#{task_id}",
            "kind": "task",
            "task_id": task_id,
            "agent": agent,
            "state": UNCLAIMED,
            "status": f"task#{agent}#{UNCLAIMED}",
            "created_at": at,
            "updated_at": at,
            "launched_for": launched_for,
            "client_token": client_token,
            "token_hash": token_hash,
            "event_version": 0,
            "version": 1,
        }
        if not conditionally(
            self._client.put_item,
            TableName=self._table,
            Item={k: encode(v) for k, v in item.items()},
            ConditionExpression="attribute_not_exists(dispatch_id)",
        ):
            return None
        return TaskRecord.from_item(item)

    def set_launched(self, task: TaskRecord, *, runtime_ref: str, capacity: str) -> None:
        self._client.update_item(
            TableName=self._table,
            Key={"dispatch_id": encode(f"task#{task.task_id}")},
            UpdateExpression="SET #r = :r, #c = :c",
            ExpressionAttributeNames={"#r": "runtime_ref", "#c": "capacity"},
            ExpressionAttributeValues={":r": encode(runtime_ref), ":c": encode(capacity)},
        )
        if runtime_ref != task.task_id:
            self._client.put_item(
                TableName=self._table,
                Item={
                    "dispatch_id": encode(f"taskref#{runtime_ref}"),
                    "task_id": encode(task.task_id),
                    "expires_at": encode(int(time.time() + 14 * 86400)),
                },
            )

    def move(
        self,
        task: TaskRecord,
        to: str,
        *,
        expect: tuple[str, ...] | None = None,
        fields: dict[str, Any] | None = None,
        remove: tuple[str, ...] = (),
    ) -> TaskRecord | None:
        """Move a task to state ``to`` if it is still in one of ``expect`` (default: the state
        read) and unchanged since read; returns the new record, or None if someone moved it first."""
        expect = expect or (task.state,)
        updates: dict[str, Any] = {
            **(fields or {}),
            "state": to,
            "status": f"task#{task.agent}#{to}",
            "updated_at": iso(now()),
            "version": task.version + 1,
        }
        if to == STOPPED:
            updates["expires_at"] = int((now() + STOPPED_TTL).timestamp())
        names = {f"#f{i}": k for i, k in enumerate(updates)}
        values = {f":v{i}": encode(v) for i, v in enumerate(updates.values())}
        expression = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(updates)))
        if remove:
            names.update({f"#r{i}": k for i, k in enumerate(remove)})
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
        names["#ver"] = "version"
        names["#state"] = "state"
        values[":expected"] = encode(task.version)
        states = []
        for i, state in enumerate(expect):
            values[f":e{i}"] = encode(state)
            states.append(f":e{i}")
        if not conditionally(
            self._client.update_item,
            TableName=self._table,
            Key={"dispatch_id": encode(f"task#{task.task_id}")},
            UpdateExpression=expression,
            ConditionExpression=f"#ver = :expected AND #state IN ({', '.join(states)})",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        ):
            return None
        known = set(TaskRecord.__dataclass_fields__)
        data = {k: v for k, v in {**task.__dict__, **updates}.items() if k in known}
        for name in remove:
            if name in data:
                data[name] = None
        return TaskRecord(**data)

    def note_event_version(self, task: TaskRecord, version: int) -> bool:
        """Record that the task-state event ``version`` is applied; False if it (or a newer one)
        already was: duplicates and stale events are dropped here, across replicas."""
        if not conditionally(
            self._client.update_item,
            TableName=self._table,
            Key={"dispatch_id": encode(f"task#{task.task_id}")},
            UpdateExpression="SET event_version = :v",
            ConditionExpression="attribute_exists(dispatch_id) AND event_version < :v",
            ExpressionAttributeValues={":v": encode(version)},
        ):
            return False
        return True


class Lease:
    """A lease item: whoever holds it runs the leased work; it lapses unless renewed."""

    def __init__(
        self,
        *,
        client: Any,
        table: str,
        name: str,
        owner: str,
        duration_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._table = table
        self.name = name
        self.owner = owner
        self.duration_s = duration_s
        self.held_until = 0.0
        self._clock = clock

    def acquire(self) -> bool:
        """Take or renew the lease; False when another owner holds an unexpired one."""
        moment = self._clock()  # before the write: the lease is never believed longer than written
        until = moment + self.duration_s
        if not conditionally(
            self._client.update_item,
            TableName=self._table,
            Key={"dispatch_id": encode(f"lease#{self.name}")},
            UpdateExpression="SET lease_owner = :me, lease_until = :until, expires_at = :x",
            ConditionExpression="attribute_not_exists(lease_until) OR lease_until < :now OR lease_owner = :me",
            ExpressionAttributeValues={
                ":me": encode(self.owner),
                ":until": encode(until),
                ":now": encode(moment),
                ":x": encode(int(until + 86400)),
            },
        ):
            self.held_until = 0.0
            return False
        self.held_until = until
        return True

    def held(self, margin_s: float = 0.0) -> bool:
        """Whether the lease still holds ``margin_s`` from now. Work that must run once checks
        this before each step that has an effect: a pass can outlive the lease it started under,
        and another replica takes the lease over once it has run out."""
        return self._clock() + margin_s < self.held_until

    def release(self) -> None:
        if not self.held_until:
            return
        conditionally(  # someone else's lease by now: nothing to release
            self._client.update_item,
            TableName=self._table,
            Key={"dispatch_id": encode(f"lease#{self.name}")},
            UpdateExpression="SET lease_until = :zero",
            ConditionExpression="lease_owner = :me",
            ExpressionAttributeValues={":zero": encode(0), ":me": encode(self.owner)},
        )
        self.held_until = 0.0
