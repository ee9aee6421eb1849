"""``outpost dev --state-dir``: the emulator's data kept across restarts.

The emulator holds everything in memory, so `outpost dev` writes a snapshot when it stops
(after the control plane, so nothing changes underneath) and loads it into the fresh emulator
when it starts with the same state directory:

- every DynamoDB item (tenants, dispatches, logs, usage, tasks...), as the API returned it;
- every object of the artifacts bucket;
- not the SQS messages: the dispatch records are the truth. A PENDING dispatch is restored
  as not yet enqueued, and the reconciler puts it on its queue again (control_plane.queueing);
  a job that was running when `outpost dev` stopped lost its task, and the reconciler
  requeues or fails it as for any lost task.

The snapshot is written beside the old one and renamed into place, so a stop that is cut
short leaves the previous snapshot whole. It is the data of a laptop, not a backup.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

from control_plane.aws import new_session
from control_plane.bootstrap import Resources

SNAPSHOT = "emulator-snapshot"


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"__b64__": base64.b64encode(value).decode()}
    raise TypeError(f"cannot store {type(value).__name__}")


def _decode(value: dict[str, Any]) -> Any:
    return base64.b64decode(value["__b64__"]) if set(value) == {"__b64__"} else value


def save(state_dir: Path, *, endpoint_url: str, resources: Resources) -> int:
    """Writes the snapshot; returns the number of items and objects in it."""
    session = new_session("us-east-1")
    dynamodb = session.client("dynamodb", endpoint_url=endpoint_url)
    s3 = session.client("s3", endpoint_url=endpoint_url)
    final = state_dir / SNAPSHOT
    staging = state_dir / f"{SNAPSHOT}.new"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "s3").mkdir(parents=True)
    count = 0
    tables: dict[str, list[dict[str, Any]]] = {}
    for table in resources.tables.values():
        items: list[dict[str, Any]] = []
        for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            items.extend(page["Items"])
        tables[table] = items
        count += len(items)
    (staging / "dynamodb.json").write_text(json.dumps(tables, default=_encode))
    objects: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=resources.artifacts_bucket):
        for entry in page.get("Contents", []):
            reply = s3.get_object(Bucket=resources.artifacts_bucket, Key=entry["Key"])
            name = f"{len(objects):08d}"
            (staging / "s3" / name).write_bytes(reply["Body"].read())
            objects.append({"key": entry["Key"], "file": name, "content_type": reply.get("ContentType")})
    (staging / "s3" / "index.json").write_text(json.dumps(objects))
    count += len(objects)
    old = state_dir / f"{SNAPSHOT}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return count


def restore(state_dir: Path, *, endpoint_url: str, resources: Resources) -> int:
    """Loads the snapshot, if there is one, into empty resources; returns what it loaded."""
    snapshot = state_dir / SNAPSHOT
    if not (snapshot / "dynamodb.json").exists():
        return 0
    session = new_session("us-east-1")
    dynamodb = session.client("dynamodb", endpoint_url=endpoint_url)
    s3 = session.client("s3", endpoint_url=endpoint_url)
    count = 0
    tables = json.loads((snapshot / "dynamodb.json").read_text(), object_hook=_decode)
    dispatches = resources.tables.get("dispatches_table")
    for table, items in tables.items():
        for item in items:
            if table == dispatches and item.get("status", {}).get("S") == "PENDING":
                item["enqueued"] = {"BOOL": False}  # its message is not in the snapshot
            dynamodb.put_item(TableName=table, Item=item)
            count += 1
    for entry in json.loads((snapshot / "s3" / "index.json").read_text()):
        extra = {"ContentType": entry["content_type"]} if entry.get("content_type") else {}
        body = (snapshot / "s3" / entry["file"]).read_bytes()
        s3.put_object(Bucket=resources.artifacts_bucket, Key=entry["key"], Body=body, **extra)
        count += 1
    return count
