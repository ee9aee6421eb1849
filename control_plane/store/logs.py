"""Dispatch log lines, stored as numbered chunks in the artifacts bucket.

Chunks live under `tenants/{tenant}/logs/{dispatch}/`, outside the dispatch's artifact prefix,
so the artifact list holds only the result bundle. The chunk number comes from an atomic
counter on the dispatch item, so concurrent appends never overwrite each other and readers
get lines in the order chunks were numbered.
"""

from __future__ import annotations

import json
from typing import Any

from control_plane.store.codec import encode

MAX_LINES_PER_READ = 5000


def log_prefix(tenant_id: str, dispatch_id: str) -> str:
    return f"tenants/{tenant_id}/logs/{dispatch_id}/"


class LogStore:
    def __init__(self, *, s3: Any, bucket: str, dynamodb: Any, table: str) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._dynamodb = dynamodb
        self._table = table

    def append(self, *, tenant_id: str, dispatch_id: str, lines: list[str]) -> int:
        """Store lines as the next chunk; returns the chunk number (1, 2, ...)."""
        reply = self._dynamodb.update_item(
            TableName=self._table,
            Key={"dispatch_id": encode(dispatch_id)},
            UpdateExpression="ADD log_chunks :one",
            ConditionExpression="attribute_exists(dispatch_id)",
            ExpressionAttributeValues={":one": encode(1)},
            ReturnValues="UPDATED_NEW",
        )
        chunk = int(reply["Attributes"]["log_chunks"]["N"])
        self._s3.put_object(
            Bucket=self._bucket,
            Key=f"{log_prefix(tenant_id, dispatch_id)}{chunk:010d}.json",
            Body=json.dumps(lines).encode(),
            ContentType="application/json",
        )
        return chunk

    def read(self, *, tenant_id: str, dispatch_id: str, after_chunk: int = 0) -> tuple[list[str], int]:
        """Lines of the chunks after `after_chunk`; returns (lines, last chunk read)."""
        prefix = log_prefix(tenant_id, dispatch_id)
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix}
        if after_chunk:
            kwargs["StartAfter"] = f"{prefix}{after_chunk:010d}.json"
        lines: list[str] = []
        last = after_chunk
        while len(lines) < MAX_LINES_PER_READ:
            reply = self._s3.list_objects_v2(**kwargs)
            for entry in reply.get("Contents", []):
                body = self._s3.get_object(Bucket=self._bucket, Key=entry["Key"])["Body"].read()
                lines.extend(json.loads(body))
                last = int(entry["Key"].rsplit("/", 1)[1].split(".")[0])
                if len(lines) >= MAX_LINES_PER_READ:
                    break
            if not reply.get("IsTruncated"):
                break
            kwargs["ContinuationToken"] = reply["NextContinuationToken"]
        return lines, last
