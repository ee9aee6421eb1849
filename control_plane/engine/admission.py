"""The admission pass: dispatches waiting for one of their tenant's run slots go on their queue
as slots free up.

A tenant runs at most ``max_running`` dispatches at once (`DispatchStore.admit` counts the
slots in one transaction with each change). `POST /dispatch` admits at once when a slot is
free; otherwise the dispatch waits PENDING with no queue message, so a tenant with a thousand
waiting jobs puts at most ``max_running`` of them in the agents' queues and never stands in
another tenant's way. Every pass visits every tenant with a free run slot, oldest waiting job
first, and stops at the first job its tenant has no slot for. It reads the tenants (one page
for the few tenants an install has) and then only as many waiting jobs as slots are free: a
backlog of thousands costs a pass no more than an empty one (it read every PENDING dispatch
each pass before, which set the cost of a busy control plane).

Safe with several replicas without a lease: admission is a conditional transaction, so two
passes admitting the same dispatch take one slot, and a second message is harmless (claims are
conditional writes).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from control_plane.lifecycle import Status
from control_plane.queueing import enqueue_dispatch
from control_plane.store import DispatchRecord, Stores
from control_plane.store.codec import decode_item, encode
from control_plane.store.tenants import TenantRecord

log = logging.getLogger("outpost.admission")


@dataclass
class Admission:
    client: Any  # DynamoDB
    table: str
    stores: Stores
    sqs: Any
    queue_urls: Mapping[str, str]

    def tick(self) -> int:
        """One pass; returns how many waiting dispatches were admitted and enqueued."""
        admitted = 0
        for tenant in self._tenants_with_free_slots():
            free = tenant.max_running - tenant.run_slots
            for record in self._waiting(tenant.tenant_id, up_to=free):
                if not enqueue_dispatch(
                    record, sqs=self.sqs, queue_urls=self.queue_urls, store=self.stores.dispatches
                ):
                    break  # no free slot (or the queue refused): the tenant's next turn is the next pass
                admitted += 1
        if admitted:
            log.info("admitted %d waiting dispatch(es)", admitted)
        return admitted

    def _tenants_with_free_slots(self) -> list[TenantRecord]:
        tenants: list[TenantRecord] = []
        start: dict[str, Any] | None = None
        while True:
            page, start = self.stores.tenants.page(limit=100, start_key=start)
            tenants.extend(t for t in page if t.run_slots < t.max_running)
            if start is None:
                return tenants

    def _waiting(self, tenant_id: str, *, up_to: int) -> list[DispatchRecord]:
        """The tenant's oldest unadmitted PENDING dispatches, at most `up_to` (its free slots)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "by-tenant-status",
            "KeyConditionExpression": "tenant_status = :ts",
            "FilterExpression": "attribute_not_exists(#a) OR #a = :f",
            "ExpressionAttributeNames": {"#a": "admitted"},
            "ExpressionAttributeValues": {
                ":ts": encode(f"{tenant_id}#{Status.PENDING}"),
                ":f": encode(False),
            },
            "Limit": max(up_to, 10),  # read before the filter: admitted ones are skipped
        }
        records: list[DispatchRecord] = []
        while len(records) < up_to:
            reply = self.client.query(**kwargs)
            records.extend(
                record
                for record in (DispatchRecord.from_item(decode_item(i)) for i in reply.get("Items", []))
                if record.agent in self.queue_urls
            )
            if "LastEvaluatedKey" not in reply:
                break
            kwargs["ExclusiveStartKey"] = reply["LastEvaluatedKey"]
        return records[:up_to]
