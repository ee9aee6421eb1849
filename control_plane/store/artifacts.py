"""A dispatch's result bundles in the artifacts bucket: list one with short-lived download URLs.

The engine signs the upload URLs (control_plane/engine/claims.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def artifact_prefix(tenant_id: str, dispatch_id: str, attempt: int) -> str:
    """The per-tenant prefix of docs/design.md, one per attempt: a late upload of an earlier
    attempt can never overwrite the bundle of the attempt that ran last."""
    return f"tenants/{tenant_id}/dispatches/{dispatch_id}/attempt-{attempt}/"


@dataclass(frozen=True)
class Artifact:
    name: str
    size: int
    last_modified: str
    url: str


class ArtifactStore:
    def __init__(self, *, s3: Any, bucket: str, url_ttl_s: int) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._url_ttl_s = url_ttl_s

    def list(self, *, tenant_id: str, dispatch_id: str, attempt: int) -> list[Artifact]:
        """The bundle of one attempt (the API shows the dispatch's current, i.e. final, one)."""
        prefix = artifact_prefix(tenant_id, dispatch_id, attempt)
        artifacts: list[Artifact] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                artifacts.append(
                    Artifact(
                        name=entry["Key"][len(prefix) :],
                        size=entry["Size"],
                        last_modified=entry["LastModified"].isoformat(),
                        url=self._s3.generate_presigned_url(
                            "get_object",
                            Params={"Bucket": self._bucket, "Key": entry["Key"]},
                            ExpiresIn=self._url_ttl_s,
                        ),
                    )
                )
        return artifacts
