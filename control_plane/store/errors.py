"""Store errors; the API turns each into a problem detail (404, 409, 422)."""

from __future__ import annotations


class StoreError(Exception):
    pass


class NotFoundError(StoreError):
    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key} not found")
        self.kind = kind
        self.key = key


class VersionConflictError(StoreError):
    """Another writer changed the record first; re-read and decide again."""

    def __init__(self, kind: str, key: str, expected_version: int) -> None:
        super().__init__(f"{kind} {key} changed concurrently (expected version {expected_version})")
        self.kind = kind
        self.key = key
        self.expected_version = expected_version
