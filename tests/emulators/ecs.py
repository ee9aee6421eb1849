"""ECS as the API reference documents it, on top of ministack: the thin layer the emulator tests
hand to EcsRuntime in place of the bare boto3 client.

ministack answers the production calls but is lenient where ECS is strict and lacks parts of
ECS. This layer refuses what ECS refuses (InvalidParameterException, as ECS would), and adds:

- the documented limits: ListTasks takes ``startedBy`` only as its one filter and at most 100
  ``maxResults``; DescribeTasks at most 100 tasks; RunTask at most 10 tasks a call and a
  ``clientToken`` of at most 64 characters; StopTask a ``reason`` of at most 255 characters;
- ``clientToken`` idempotency: the same token with the same request answers the first reply
  and starts nothing; with another request it is refused;
- PROVISIONING: a task launched here reports PROVISIONING until ``start`` (ministack starts
  every task RUNNING at once);
- task-state events ("ECS Task State Change", as EventBridge delivers them), with the
  ``detail.version`` ECS increments per task, handed to ``sink`` (the task-events queue);
- a Spot interruption (``interrupt``): desired STOPPED while the task runs out its stop
  timeout (DEACTIVATING), then STOPPED with stopCode ``SpotInterruption``;
- a task that vanishes without any event reaching Outpost (``vanish``);
- a RunTask answer lost on the way back (``lose_run_task_answers``): ECS started the task and
  keeps its client token, the caller sees a read timeout.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError, ReadTimeoutError

LIST_FILTERS = ("containerInstance", "family", "serviceName", "desiredStatus", "launchType")
SPOT_REASON = "Your Spot Task was interrupted."


def refuse(operation: str, message: str, code: str = "InvalidParameterException") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}, operation
    )


@dataclass
class DocumentedEcs:
    client: Any  # a boto3 ECS client pointed at ministack
    sink: Callable[[dict[str, Any]], None] = lambda event: None
    calls: dict[str, int] = field(default_factory=dict)
    lose_run_task_answers: int = 0
    _tokens: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    _status: dict[str, dict[str, str]] = field(default_factory=dict)  # arn -> overlaid fields
    _versions: dict[str, int] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:  # meta, exceptions, other operations
        return getattr(self.client, name)

    def _count(self, operation: str) -> None:
        self.calls[operation] = self.calls.get(operation, 0) + 1

    # -- the calls EcsRuntime makes ---------------------------------------------------------

    def run_task(self, **params: Any) -> dict[str, Any]:
        self._count("run_task")
        if not 1 <= params.get("count", 1) <= 10:
            raise refuse("RunTask", "count: you can specify up to 10 tasks for each call")
        token = params.get("clientToken")
        if token is not None and not (0 < len(token) <= 64 and all(33 <= ord(c) <= 126 for c in token)):
            raise refuse("RunTask", "clientToken: up to 64 characters in the range 33-126")
        request = json.dumps(params, sort_keys=True)
        if token in self._tokens:
            first, reply = self._tokens[token]
            if first != request:
                raise refuse("RunTask", "clientToken was used with a different request", "ClientException")
            return reply  # idempotent: nothing new starts
        reply = self.client.run_task(**params)
        for task in reply.get("tasks", []):
            self._status[task["taskArn"]] = {"lastStatus": "PROVISIONING"}
            task["lastStatus"] = "PROVISIONING"
            self._emit(task)
        if token is not None:
            self._tokens[token] = (request, reply)
        if self.lose_run_task_answers > 0:
            self.lose_run_task_answers -= 1
            raise ReadTimeoutError(endpoint_url="https://ecs.us-east-1.amazonaws.com")
        return reply

    def stop_task(self, **params: Any) -> dict[str, Any]:
        self._count("stop_task")
        if len(params.get("reason", "")) > 255:
            raise refuse("StopTask", "reason: up to 255 characters are allowed")
        reply = self.client.stop_task(**params)
        arn = reply["task"]["taskArn"]
        if arn in self._status and "stopCode" not in self._status[arn]:
            self._status.pop(arn)
        self._emit(self._described(arn))
        return reply

    def list_tasks(self, **params: Any) -> dict[str, Any]:
        self._count("list_tasks")
        others = [name for name in LIST_FILTERS if name in params]
        if "startedBy" in params and others:
            raise refuse(
                "ListTasks",
                f"startedBy must be the only filter; also given: {', '.join(others)}",
            )
        if not 1 <= params.get("maxResults", 100) <= 100:
            raise refuse("ListTasks", "maxResults: between 1 and 100")
        return self.client.list_tasks(**params)

    def get_paginator(self, operation: str) -> Any:
        """ListTasks pages through this layer too, so its rules hold for paginated calls."""
        if operation != "list_tasks":
            raise NotImplementedError(operation)
        return _ListTasksPages(self)

    def describe_tasks(self, **params: Any) -> dict[str, Any]:
        self._count("describe_tasks")
        if not 1 <= len(params.get("tasks", [])) <= 100:
            raise refuse("DescribeTasks", "tasks: a list of up to 100 task IDs or ARNs")
        reply = self.client.describe_tasks(**params)
        for task in reply.get("tasks", []):
            task.update(self._status.get(task["taskArn"], {}))
        return reply

    # -- what ECS does on its own ---------------------------------------------------------------

    def start(self, arn: str) -> None:
        """The task leaves PROVISIONING: PENDING, then RUNNING."""
        for status in ("PENDING", "RUNNING"):
            self._status[arn] = {"lastStatus": status}
            self._emit(self._described(arn))
        self._status.pop(arn)

    def interrupt(self, arn: str) -> None:
        """Fargate reclaims a Spot task: desired STOPPED, and the task runs out its stop timeout."""
        self.client.stop_task(cluster=self._cluster(arn), task=arn, reason=SPOT_REASON)
        self._status[arn] = {
            "lastStatus": "DEACTIVATING",
            "desiredStatus": "STOPPED",
            "stopCode": "SpotInterruption",
            "stoppedReason": SPOT_REASON,
        }
        self._emit(self._described(arn))

    def finish_interruption(self, arn: str) -> None:
        self._status[arn] = {**self._status[arn], "lastStatus": "STOPPED"}
        self._emit(self._described(arn))

    def vanish(self, arn: str) -> None:
        """The task stops and no event about it reaches Outpost."""
        self.client.stop_task(cluster=self._cluster(arn), task=arn, reason="lost")
        self._status.pop(arn, None)

    # -- events ---------------------------------------------------------------------------------

    def _cluster(self, arn: str) -> str:
        return arn.split("/")[1]

    def _described(self, arn: str) -> dict[str, Any]:
        [task] = self.describe_tasks(cluster=self._cluster(arn), tasks=[arn])["tasks"]
        self.calls["describe_tasks"] -= 1  # the layer's own look-up, not the runtime's
        return task

    def _emit(self, task: dict[str, Any]) -> None:
        arn = task["taskArn"]
        self._versions[arn] = self._versions.get(arn, 0) + 1
        detail = json.loads(json.dumps(task, default=str))
        detail["version"] = self._versions[arn]
        self.sink(
            {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "ECS Task State Change",
                "source": "aws.ecs",
                "account": arn.split(":")[4],
                "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": arn.split(":")[3],
                "resources": [arn],
                "detail": detail,
            }
        )


@dataclass
class _ListTasksPages:
    ecs: DocumentedEcs

    def paginate(self, **params: Any) -> Iterator[dict[str, Any]]:
        while True:
            page = self.ecs.list_tasks(**params)
            yield page
            if not page.get("nextToken"):
                return
            params = {**params, "nextToken": page["nextToken"]}
