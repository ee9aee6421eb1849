"""Counts the AWS requests boto3 clients send, per service and operation.

What DynamoDB, SQS, S3 and ECS bill and throttle is requests, so the count is taken on
botocore's ``before-send`` event: once per HTTP request that leaves the client, retries
included (``before-call`` would count a retried call once). A call answered before it is sent
(a failure injected with a ``before-call`` handler) is not a request and is not counted.
Presigned URLs are signed locally: the uploads a runner makes with them are S3 requests that
no client here sends, and whoever measures a lifecycle counts them at the HTTP layer.

`make bench` (tests/bench/bench_aws_calls.py) counts one dispatch's lifecycle with it.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class AwsCallCounter:
    """Thread-safe counts of requests, keyed by (service, operation), e.g. ("dynamodb", "PutItem")."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def watch(self, *clients: Any) -> AwsCallCounter:
        """Counts every request these boto3 clients send from now on."""
        for client in clients:
            client.meta.events.register("before-send", self._sent)
        return self

    def _sent(self, event_name: str, **kwargs: Any) -> None:
        # "before-send.<service id>.<Operation>"; returning None lets the request go out
        _, service, operation = event_name.split(".", 2)
        with self._lock:
            self._counts[(service, operation)] += 1

    def add(self, service: str, operation: str, count: int = 1) -> None:
        """A request counted elsewhere (a presigned upload seen at the HTTP layer)."""
        with self._lock:
            self._counts[(service, operation)] += count

    def snapshot(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter(self._counts)

    def by_service(self) -> Counter[str]:
        totals: Counter[str] = Counter()
        for (service, _), count in self.snapshot().items():
            totals[service] += count
        return totals
