"""The admission pass: dispatches waiting for one of their tenant's run slots go on their queue
as slots free up.

A tenant runs at most ``max_running`` dispatches at once (`DispatchStore.admit` counts the
slots in one transaction with each change). `POST /dispatch` admits at once when a slot is
free; otherwise the dispatch waits PENDING with no queue message, so a tenant with a thousand
waiting jobs puts at most ``max_running`` of them in the agents' queues and never stands in
another tenant's way. Every pass visits every waiting tenant, oldest job first, and stops at
the first job its tenant has no slot for.

Safe with several replicas without a lease: admission is a conditional transaction, so two
passes admitting the same dispatch take one slot, and a second message is harmless (claims are
conditional writes).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from control_plane.engine.reconciler import dispatches_in
from control_plane.lifecycle import Status
from control_plane.queueing import enqueue_dispatch
from control_plane.store import DispatchRecord, Stores

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
        waiting: dict[str, list[DispatchRecord]] = {}
        for record in dispatches_in(self.client, self.table, Status.PENDING):  # oldest first
            if not record.admitted and record.agent in self.queue_urls:
                waiting.setdefault(record.tenant_id, []).append(record)
        admitted = 0
        for tenant_id, records in waiting.items():
            for record in records:
                if not enqueue_dispatch(
                    record, sqs=self.sqs, queue_urls=self.queue_urls, store=self.stores.dispatches
                ):
                    break  # no free slot (or the queue refused): the tenant's next turn is the next pass
                admitted += 1
            log.debug("admission pass: tenant %s has %d waiting", tenant_id, len(records))
        if admitted:
            log.info("admitted %d waiting dispatch(es)", admitted)
        return admitted
