"""The dispatch store: dispatch records on DynamoDB, changed only through conditional writes.

Every change of status goes through `DispatchStore.transition`, which checks the lifecycle table
(control_plane.lifecycle) and writes with a condition on the record's `version`: of two writers
that read the same version, exactly one wins and the other gets VersionConflictError. The version
rises by one per applied change.

Tenancy: the read functions take the tenant id and answer None for another tenant's dispatch,
exactly as for a missing one, so no caller can tell the two apart.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import hmac
import json
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from control_plane import lifecycle, metrics
from control_plane.lifecycle import TERMINAL, Status
from control_plane.store.audit import Actor, AuditLog
from control_plane.store.codec import (
    conditionally,
    decode_item,
    encode,
    encode_item,
    failed_conditions,
    is_condition_failure,
    iso,
    now,
    parse_iso,
    transactionally,
    update_expression,
)
from control_plane.store.errors import NotFoundError, VersionConflictError
from control_plane.store.stats import FleetStats

# Fields a transition may set besides the status (what the engine learns about a run).
TRANSITION_FIELDS = frozenset(
    {"task_id", "runtime_ref", "capacity", "exit_code", "error", "artifacts", "cost", "summary"}
)


# The model gateway's running totals for a dispatch (control_plane/gateway): top-level numbers,
# because DynamoDB's atomic ADD works on top-level attributes only. One ADD per model call.
GATEWAY_ATTRIBUTES = (
    "gw_calls",
    "gw_unpriced_calls",
    "gw_input_tokens",
    "gw_cached_input_tokens",
    "gw_output_tokens",
    "gw_usd",
    "gw_model",
)


def new_dispatch_id() -> str:
    return "d-" + uuid.uuid4().hex


def gateway_cost(item: dict[str, Any]) -> dict[str, Any] | None:
    """The dispatch's ``cost`` as the model gateway counted it (decoded item), or None when no
    call of it was metered. ``usd`` only when every call had a price (else the sum would pass
    for the whole); the model is the last call's."""
    calls = item.get("gw_calls")
    if not isinstance(calls, int) or calls <= 0:
        return None
    cost: dict[str, Any] = {
        "input_tokens": int(item.get("gw_input_tokens") or 0),
        "cached_input_tokens": int(item.get("gw_cached_input_tokens") or 0),
        "output_tokens": int(item.get("gw_output_tokens") or 0),
        "source": "gateway",
        "calls": calls,
    }
    if not item.get("gw_unpriced_calls"):
        cost["usd"] = round(float(item.get("gw_usd") or 0), 6)
    if item.get("gw_model"):
        cost["model"] = item["gw_model"]
    return cost


@dataclass(frozen=True)
class DispatchRecord:
    dispatch_id: str
    tenant_id: str
    agent: str
    task: str
    timeout_s: int
    status: Status = Status.PENDING
    created_at: str = ""
    updated_at: str = ""
    repo_url: str | None = None
    repo_ref: str | None = None
    model: str | None = None  # the model the dispatch asked for; None: the agent's default
    labels: dict[str, str] = field(default_factory=dict)
    # {"branch", "pull_request": {"title", "body", "draft", "base"} | None}; never a token
    publish: dict[str, Any] | None = None
    timestamps: dict[str, str] = field(default_factory=dict)  # status -> when it was entered
    attempt: int = 1
    version: int = 1
    enqueued: bool = False  # becomes true once the queue accepted the job (see DispatchStore.unenqueued)
    admitted: bool = False  # holds one of its tenant's run slots (see DispatchStore.admit)
    task_id: str | None = None  # Outpost's id of the task running this attempt
    runtime_ref: str | None = None  # the runtime's handle for it (ECS task ARN, local id)
    capacity: str | None = None  # FARGATE or FARGATE_SPOT: what the task running it is billed as
    exit_code: int | None = None
    error: str | None = None
    artifacts: list[str] = field(default_factory=list)
    cost: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    cancel_requested: str | None = None  # who cancelled it while it ran (see request_cancel)

    def to_item(self) -> dict[str, Any]:
        item = asdict(self)
        item["status"] = str(self.status)
        item["tenant_status"] = f"{self.tenant_id}#{self.status}"
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> DispatchRecord:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in item.items() if k in known}
        values["status"] = Status(values["status"])
        # The gateway saw every model call; what the runner reported stays in `summary`.
        values["cost"] = gateway_cost(item) or values.get("cost")
        return cls(**values)


@dataclass(frozen=True)
class RunState:
    """What decides whether a dispatch's attempt is on: read for every model call the gateway
    passes (a projection of the record, cheaper to read than the whole)."""

    dispatch_id: str
    tenant_id: str
    agent: str
    status: Status
    attempt: int
    task_id: str | None
    cancel_requested: str | None
    model: str | None  # the model the dispatch asked for; None: the agent's default

    FIELDS: ClassVar[tuple[str, ...]] = (
        "dispatch_id", "tenant_id", "agent", "status", "attempt", "task_id", "cancel_requested", "model",
    )  # fmt: skip


class DispatchStore:
    def __init__(
        self, *, client: Any, table: str, tenants_table: str, audit: AuditLog, stats: FleetStats
    ) -> None:
        self._client = client
        self._table = table
        self._tenants_table = tenants_table
        self._audit = audit
        self._stats = stats

    # -- reads -------------------------------------------------------------------------------

    def get(self, *, dispatch_id: str, tenant_id: str | None) -> DispatchRecord | None:
        """The dispatch, or None when it does not exist or (tenant_id given) belongs to another tenant.

        tenant_id=None is for the engine, which acts across tenants; the API always passes one.
        """
        if not dispatch_id.startswith("d-"):  # auxiliary items share the table; never expose them
            return None
        reply = self._client.get_item(
            TableName=self._table, Key={"dispatch_id": encode(dispatch_id)}, ConsistentRead=True
        )
        if "Item" not in reply:
            return None
        record = DispatchRecord.from_item(decode_item(reply["Item"]))
        if tenant_id is not None and record.tenant_id != tenant_id:
            return None
        return record

    def run_state(self, *, dispatch_id: str) -> RunState | None:
        """The dispatch's status, attempt and task (a consistent read of those fields only)."""
        if not dispatch_id.startswith("d-"):
            return None
        names = {f"#p{i}": name for i, name in enumerate(RunState.FIELDS)}
        reply = self._client.get_item(
            TableName=self._table,
            Key={"dispatch_id": encode(dispatch_id)},
            ConsistentRead=True,
            ProjectionExpression=", ".join(names),
            ExpressionAttributeNames=names,
        )
        if "Item" not in reply:
            return None
        item = decode_item(reply["Item"])
        return RunState(
            dispatch_id=item["dispatch_id"],
            tenant_id=item["tenant_id"],
            agent=item["agent"],
            status=Status(item["status"]),
            attempt=int(item["attempt"]),
            task_id=item.get("task_id"),
            cancel_requested=item.get("cancel_requested"),
            model=item.get("model"),
        )

    def count(self, *, tenant_id: str, statuses: frozenset[Status], at_most: int | None = None) -> int:
        """How many of a tenant's dispatches are in `statuses` (index read: may lag by a moment),
        counting no further than `at_most`: a quota check reads as many index entries as the
        quota allows, however long the backlog."""
        total = 0
        for status in statuses:
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": "by-tenant-status",
                "KeyConditionExpression": "tenant_status = :ts",
                "ExpressionAttributeValues": {":ts": encode(f"{tenant_id}#{status}")},
                "Select": "COUNT",
            }
            while at_most is None or total < at_most:
                if at_most is not None:
                    kwargs["Limit"] = at_most - total
                reply = self._client.query(**kwargs)
                total += reply["Count"]
                if "LastEvaluatedKey" not in reply:
                    break
                kwargs["ExclusiveStartKey"] = reply["LastEvaluatedKey"]
        return total

    def list(
        self,
        *,
        tenant_id: str,
        limit: int,
        status: Status | None = None,
        agent: str | None = None,
        start_key: dict[str, Any] | None = None,
    ) -> tuple[list[DispatchRecord], dict[str, Any] | None]:
        """A page of the tenant's dispatches, newest first; returns (records, key to continue from).

        The tenant is the index partition, so a page can never hold another tenant's dispatch.
        """
        if status is not None:
            index, condition, value = "by-tenant-status", "tenant_status = :p", f"{tenant_id}#{status}"
        else:
            index, condition, value = "by-tenant", "tenant_id = :p", tenant_id
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": index,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": {":p": encode(value)},
            "ScanIndexForward": False,
        }
        if agent is not None:
            kwargs["FilterExpression"] = "#agent = :a"
            kwargs["ExpressionAttributeNames"] = {"#agent": "agent"}
            kwargs["ExpressionAttributeValues"][":a"] = encode(agent)
        if start_key:
            kwargs["ExclusiveStartKey"] = {k: encode(v) for k, v in start_key.items()}
        records: list[DispatchRecord] = []
        last_key: dict[str, Any] | None = None
        for _ in range(20):  # a filter may thin pages out; bound the work of one request
            kwargs["Limit"] = max(limit - len(records), 10) if agent else limit - len(records)
            reply = self._client.query(**kwargs)
            for item in reply.get("Items", []):
                records.append(DispatchRecord.from_item(decode_item(item)))
                if len(records) == limit:
                    return records, self._key_of(records[-1], index)
            if "LastEvaluatedKey" not in reply:
                return records, None
            kwargs["ExclusiveStartKey"] = reply["LastEvaluatedKey"]
            last_key = {k: decode_item({k: v})[k] for k, v in reply["LastEvaluatedKey"].items()}
        return records, last_key

    @staticmethod
    def _key_of(record: DispatchRecord, index: str) -> dict[str, Any]:
        key = {"dispatch_id": record.dispatch_id, "created_at": record.created_at}
        if index == "by-tenant":
            key["tenant_id"] = record.tenant_id
        else:
            key["tenant_status"] = f"{record.tenant_id}#{record.status}"
        return key

    def unenqueued(self, *, older_than_s: float, limit: int = 100) -> builtins.list[DispatchRecord]:
        """Admitted PENDING dispatches whose queue message was never confirmed sent, idle for
        `older_than_s`. (Dispatches still waiting for a run slot are the admission pass's.)

        Creating a dispatch writes the record with enqueued=false, sends the queue message, then
        sets enqueued=true (`mark_enqueued`); a requeue sets it back to false. A crash between
        the write and the send therefore leaves a PENDING record with enqueued=false, and nothing
        is lost as long as the engine's reconciler periodically runs:

            for record in store.unenqueued(older_than_s=60):
                enqueue_dispatch(record, queues=..., store=store)   # control_plane.queueing

        A second message for the same dispatch is harmless: the claim is a conditional write.
        """
        cutoff = iso(now() - timedelta(seconds=older_than_s))
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "by-status",
            "KeyConditionExpression": "#s = :s AND created_at < :c",
            "FilterExpression": "#e = :f AND #a = :t AND #u < :c",
            "ExpressionAttributeNames": {
                "#s": "status",
                "#e": "enqueued",
                "#a": "admitted",
                "#u": "updated_at",
            },
            "ExpressionAttributeValues": {
                ":s": encode(str(Status.PENDING)),
                ":c": encode(cutoff),
                ":f": encode(False),
                ":t": encode(True),
            },
        }
        records: builtins.list[DispatchRecord] = []
        while len(records) < limit:
            reply = self._client.query(**kwargs)
            records.extend(DispatchRecord.from_item(decode_item(i)) for i in reply.get("Items", []))
            if "LastEvaluatedKey" not in reply:
                break
            kwargs["ExclusiveStartKey"] = reply["LastEvaluatedKey"]
        return records[:limit]

    # -- writes ------------------------------------------------------------------------------

    def create(self, *, record: DispatchRecord, actor: Actor) -> DispatchRecord:
        """Write a new PENDING dispatch and its audit record; VersionConflictError if the id
        exists (never overwrites).

        The same transaction admits it (`admit`) when its tenant has a free run slot, so the
        common case is one write; otherwise it is written unadmitted, to wait for the
        admission pass (control_plane.engine.admission).
        """
        at = iso(now())
        record = replace(
            record,
            status=Status.PENDING,
            created_at=record.created_at or at,
            updated_at=at,
            timestamps={str(Status.PENDING): record.created_at or at},
            version=1,
            enqueued=False,
            admitted=True,
        )
        audit = self._audit.put(
            actor=actor,
            action="dispatch.create",
            tenant_id=record.tenant_id,
            target=record.dispatch_id,
            details={"agent": record.agent, "status": str(record.status), "version": 1},
        )
        failed = failed_conditions(
            self._client, [self._new(record), self._slots(record.tenant_id, +1), {"Put": audit}]
        )
        if failed is not None and failed[0]:
            raise VersionConflictError("dispatch", record.dispatch_id, 0)
        if failed is not None:  # no free run slot (or, rarely, kept conflicting): wait unadmitted
            record = replace(record, admitted=False)
            if failed_conditions(self._client, [self._new(record), {"Put": audit}]) is not None:
                raise VersionConflictError("dispatch", record.dispatch_id, 0)
        self._stats.record_created(agent=record.agent, created_at=parse_iso(record.created_at))
        metrics.dispatch_created(record.agent)
        return record

    def _new(self, record: DispatchRecord) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table,
                "Item": encode_item(record.to_item()),
                "ConditionExpression": "attribute_not_exists(dispatch_id)",
            }
        }

    def mark_enqueued(self, *, dispatch_id: str, attempt: int) -> bool:
        """Note that the queue accepted this attempt's message. Bookkeeping, not a lifecycle
        change: the version stays, so it never makes a concurrent transition conflict."""
        if not conditionally(
            self._client.update_item,
            TableName=self._table,
            Key={"dispatch_id": encode(dispatch_id)},
            UpdateExpression="SET #e = :t, #ea = :at",
            ConditionExpression="#s = :p AND #n = :n",
            ExpressionAttributeNames={
                "#s": "status",
                "#e": "enqueued",
                "#ea": "enqueued_at",
                "#n": "attempt",
            },
            ExpressionAttributeValues={
                ":t": encode(True),
                ":at": encode(iso(now())),
                ":p": encode(str(Status.PENDING)),
                ":n": encode(attempt),
            },
        ):
            return False  # already claimed, cancelled or requeued: nothing to note
        return True

    def add_gateway_usage(
        self,
        *,
        dispatch_id: str,
        input_tokens: int,
        cached_input_tokens: int,
        output_tokens: int,
        cost_usd: float | None,
        model: str | None,
    ) -> float | None:
        """Add one model call's tokens and cost (None: its model has no price) to the dispatch's
        gateway totals, in one atomic ADD: calls that end at once on several replicas all count.
        Bookkeeping like `mark_enqueued` (the version stays); a call that ends after its
        dispatch counts too, since it was spent. Returns the dispatch's priced spend after this
        call (what its budget is checked against), or None if the dispatch does not exist."""
        values: dict[str, Any] = {
            ":one": encode(1),
            ":i": encode(input_tokens),
            ":c": encode(cached_input_tokens),
            ":o": encode(output_tokens),
        }
        adds = ["gw_calls :one", "gw_input_tokens :i", "gw_cached_input_tokens :c", "gw_output_tokens :o"]
        if cost_usd is None:
            adds.append("gw_unpriced_calls :one")
        else:
            adds.append("gw_usd :usd")
            values[":usd"] = encode(Decimal(str(cost_usd)))
        expression = "ADD " + ", ".join(adds)
        if model:
            expression += " SET gw_model = :m"
            values[":m"] = encode(model)
        try:
            reply = self._client.update_item(
                TableName=self._table,
                Key={"dispatch_id": encode(dispatch_id)},
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(dispatch_id)",
                ExpressionAttributeValues=values,
                ReturnValues="UPDATED_NEW",
            )
        except Exception as error:
            if is_condition_failure(error):
                return None
            raise
        spent = reply.get("Attributes", {}).get("gw_usd")
        return float(spent["N"]) if spent else 0.0

    def request_cancel(self, *, dispatch_id: str, task_id: str, by: str) -> bool:
        """Note that a RUNNING dispatch is being cancelled, before its task is told to stop: if
        the canceller dies after the stop, the tracker and the reconciler see the mark and end
        the dispatch CANCELLED rather than FAILED. Bookkeeping like `mark_enqueued`: the version
        stays. False if the dispatch no longer runs on that task."""
        return conditionally(
            self._client.update_item,
            TableName=self._table,
            Key={"dispatch_id": encode(dispatch_id)},
            UpdateExpression="SET #c = :by",
            ConditionExpression="#s = :r AND #t = :t",
            ExpressionAttributeNames={"#c": "cancel_requested", "#s": "status", "#t": "task_id"},
            ExpressionAttributeValues={
                ":by": encode(by),
                ":r": encode(str(Status.RUNNING)),
                ":t": encode(task_id),
            },
        )

    def admit(self, *, record: DispatchRecord) -> DispatchRecord | None:
        """Give a PENDING dispatch one of its tenant's run slots; None while all are taken.

        A tenant runs at most ``max_running`` dispatches at once, whatever the API, the scaler
        and the claims do: the tenant item counts the slots its admitted, unfinished dispatches
        hold (``run_slots``), a dispatch goes on its agent's queue only once admitted
        (control_plane.queueing), and it gives its slot back in the transaction that makes it
        terminal (`transition`). Each change writes both items in one transaction, so the
        count never drifts, and two writers admitting at once cannot overfill a tenant. Work
        beyond the limit waits PENDING, unqueued, and so never stands in another tenant's way.
        """
        if record.admitted:
            return record
        admitted = self._transact(
            {
                "Update": {
                    "TableName": self._table,
                    "Key": {"dispatch_id": encode(record.dispatch_id)},
                    "UpdateExpression": "SET #a = :t",
                    "ConditionExpression": "#s = :p AND (attribute_not_exists(#a) OR #a = :f)",
                    "ExpressionAttributeNames": {"#a": "admitted", "#s": "status"},
                    "ExpressionAttributeValues": {
                        ":t": encode(True),
                        ":f": encode(False),
                        ":p": encode(str(Status.PENDING)),
                    },
                }
            },
            tenant_id=record.tenant_id,
            slots=+1,
        )
        if admitted:
            return replace(record, admitted=True)
        current = self.get(dispatch_id=record.dispatch_id, tenant_id=None)  # `record` may be stale
        return (
            current if current is not None and current.admitted and current.status is Status.PENDING else None
        )

    def _transact(self, change: dict[str, Any], *, tenant_id: str, slots: int) -> bool:
        """One transaction: `change` to a dispatch, and its tenant's run-slot count by `slots`."""
        return transactionally(self._client, [change, self._slots(tenant_id, slots)])

    def _slots(self, tenant_id: str, slots: int) -> dict[str, Any]:
        """The change of a tenant's run-slot count by `slots`, for a transaction. Taking a slot
        (+1) is conditional on a free one; giving one back (-1) never fails."""
        names = {"#slots": "run_slots", "#max": "max_running"}
        values: dict[str, Any] = {":zero": encode(0), ":n": encode(abs(slots))}
        tenant: dict[str, Any] = {
            "TableName": self._tenants_table,
            "Key": {"tenant_id": encode(tenant_id)},
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if slots > 0:
            tenant["UpdateExpression"] = "SET #slots = if_not_exists(#slots, :zero) + :n"
            tenant["ConditionExpression"] = "(attribute_not_exists(#slots) AND #max > :zero) OR #slots < #max"
        else:
            names.pop("#max")
            tenant["UpdateExpression"] = "SET #slots = if_not_exists(#slots, :n) - :n"
        return {"Update": tenant}

    def transition(
        self,
        *,
        dispatch_id: str,
        to: Status | str,
        actor: Actor,
        expected_version: int | None = None,
        tenant_id: str | None = None,
        changes: dict[str, Any] | None = None,
        current: DispatchRecord | None = None,
    ) -> DispatchRecord:
        """Move a dispatch to status `to` in one conditional write; returns the new record.

        current: the record as the caller read it, saving this a read; the write's condition
        (version, status and admission unchanged) refuses it if it is stale.

        expected_version: the version the caller decided on; None means "the current one" (read
        here). Raises NotFoundError, lifecycle.IllegalTransitionError (nothing written) or
        VersionConflictError (someone else changed it first). `changes` may set TRANSITION_FIELDS. A requeue
        (-> PENDING) raises the attempt, clears the task id and marks the job not yet enqueued.
        """
        to = Status(to)
        changes = dict(changes or {})
        unknown = set(changes) - TRANSITION_FIELDS
        if unknown:
            raise ValueError(f"transition cannot set {sorted(unknown)}")
        if current is None or current.dispatch_id != dispatch_id:
            current = self.get(dispatch_id=dispatch_id, tenant_id=tenant_id)
        if current is None or (tenant_id is not None and current.tenant_id != tenant_id):
            raise NotFoundError("dispatch", dispatch_id)
        if expected_version is not None and current.version != expected_version:
            raise VersionConflictError("dispatch", dispatch_id, expected_version)
        lifecycle.transition(current.status, to)

        moment = now()
        at = iso(moment)
        updates: dict[str, Any] = {
            **changes,
            "status": str(to),
            "tenant_status": f"{current.tenant_id}#{to}",
            "updated_at": at,
            "version": current.version + 1,
        }
        if lifecycle.is_requeue(current.status, to):
            updates.update(attempt=current.attempt + 1, enqueued=False, task_id=None, runtime_ref=None)
        names = {
            "#ts": "timestamps",
            "#st": str(to),
            "#ver": "version",
            "#status": "status",
            "#adm": "admitted",
        }
        values = {
            ":at": encode(at),
            ":expected": encode(current.version),
            ":from": encode(str(current.status)),
            ":admitted": encode(True),
        }
        # admission changes no version: the condition holds it too, so an end never misses the
        # run slot a dispatch was given meanwhile
        admission = (
            "#adm = :admitted" if current.admitted else "(attribute_not_exists(#adm) OR #adm <> :admitted)"
        )
        releases_slot = current.admitted and to in TERMINAL
        if releases_slot:
            updates["admitted"] = False
        expression = update_expression(updates, names=names, values=values, sets=("#ts.#st = :at",))
        write = {
            "TableName": self._table,
            "Key": {"dispatch_id": encode(dispatch_id)},
            "UpdateExpression": expression,
            "ConditionExpression": f"#ver = :expected AND #status = :from AND {admission}",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        # the change and its audit entry in one write: the trail never misses a transition
        audit = self._audit.put(
            actor=actor,
            action="dispatch.transition",
            tenant_id=current.tenant_id,
            target=dispatch_id,
            details={"from": str(current.status), "to": str(to), "version": current.version + 1},
        )
        items = [{"Update": write}, {"Put": audit}]
        if releases_slot:
            items.insert(1, self._slots(current.tenant_id, -1))
        if not transactionally(self._client, items):
            raise VersionConflictError("dispatch", dispatch_id, current.version)

        record_fields = {k: v for k, v in updates.items() if k != "tenant_status"}
        record_fields["status"] = to
        record = replace(current, **record_fields, timestamps={**current.timestamps, str(to): at})
        self._after_transition(current, record, moment)
        return record

    def _after_transition(self, before: DispatchRecord, after: DispatchRecord, moment: datetime) -> None:
        running_at = before.timestamps.get(str(Status.RUNNING))
        run_seconds = (moment - parse_iso(running_at)).total_seconds() if running_at else None
        self._stats.record_transition(
            agent=after.agent,
            previous=before.status,
            to=after.status,
            created_at=parse_iso(before.created_at),
            at=moment,
            run_seconds=run_seconds if after.status in TERMINAL else None,
        )
        if after.status is Status.RUNNING:
            metrics.dispatch_started(after.agent, (moment - parse_iso(before.created_at)).total_seconds())
        elif after.status in TERMINAL:
            metrics.dispatch_finished(after.agent, str(after.status), run_seconds)


class CursorError(ValueError):
    pass


def sign_cursor(*, key: bytes, tenant_id: str, binding: dict[str, Any], position: dict[str, Any]) -> str:
    """An opaque cursor: the position plus what it was issued for, signed with a server key.

    The tenant id and the filters are part of the signed text, so a cursor neither works for
    another tenant nor with other filters, and a tenant cannot forge one to start elsewhere.
    """
    body = json.dumps({"t": tenant_id, "b": binding, "p": position}, separators=(",", ":"), sort_keys=True)
    mac = hmac.new(key, body.encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=") + "." + _b64(mac)


def read_cursor(cursor: str, *, key: bytes, tenant_id: str, binding: dict[str, Any]) -> dict[str, Any]:
    try:
        encoded, mac_text = cursor.split(".", 1)
        body = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        mac = base64.urlsafe_b64decode(mac_text + "=" * (-len(mac_text) % 4))
    except ValueError as error:
        raise CursorError("not a cursor issued by this service") from error
    expected = hmac.new(key, body, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(mac, expected):
        raise CursorError("not a cursor issued by this service")
    data = json.loads(body)
    if data["t"] != tenant_id or data["b"] != binding:
        raise CursorError("the cursor belongs to another listing")
    position: dict[str, Any] = data["p"]
    return position


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
