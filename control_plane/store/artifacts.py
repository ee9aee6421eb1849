"""A dispatch's result bundle in the artifacts bucket: list it with short-lived download URLs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def artifact_prefix(tenant_id: str, dispatch_id: str) -> str:
    """The per-tenant prefix of docs/design.md; every object of a dispatch lives under it."""
    return f"tenants/{tenant_id}/dispatches/{dispatch_id}/"


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

    def list(self, *, tenant_id: str, dispatch_id: str) -> list[Artifact]:
        prefix = artifact_prefix(tenant_id, dispatch_id)
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

    def upload_url(self, *, tenant_id: str, dispatch_id: str, name: str) -> str:
        """A presigned PUT URL for one bundle file (the engine hands these to the runner)."""
        if "/" in name or name.startswith("."):
            raise ValueError(f"artifact name {name!r} must be a plain file name")
        return self._s3.generate_presigned_url(
            "put_object",
            Params={"Bucket": self._bucket, "Key": artifact_prefix(tenant_id, dispatch_id) + name},
            ExpiresIn=self._url_ttl_s,
        )
