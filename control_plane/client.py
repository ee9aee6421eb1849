"""A client of the control plane's REST API, shared by the ``outpost`` CLI and the MCP server.

Every failure is an ``OutpostError`` with one line a person can act on (the API's problem
detail, or what went wrong reaching it); callers never see an httpx traceback.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

TERMINAL = frozenset({"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"})
MANIFEST = "manifest.json"  # agents/runner/bundle.py: sha256 and size of every other file


class OutpostError(Exception):
    """A failed call: ``status`` is the HTTP status when the API answered, else None."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def check_url(url: str) -> str:
    """The control plane's base URL without a trailing slash; refuses what httpx would misread."""
    url = url.strip()
    if not url:
        raise OutpostError("no control plane URL: set OUTPOST_URL or pass --url")
    parsed = httpx.URL(url) if "://" in url else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise OutpostError(f"the control plane URL must start with http:// or https:// (got {url!r})")
    return url.rstrip("/")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)
    return str(body)


class Client:
    """Calls with a tenant's API key, or with the admin key for the ``/tenants`` routes."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 30.0) -> None:
        self.url = check_url(url)
        if not api_key:
            raise OutpostError(
                "no API key: set OUTPOST_API_KEY (OUTPOST_ADMIN_KEY for tenants) or pass --api-key"
            )
        self._http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise self._unreachable(error) from None
        if response.status_code >= 400:
            raise OutpostError(f"{response.status_code}: {_detail(response)}", response.status_code)
        return response.json() if response.content else None

    def _unreachable(self, error: httpx.HTTPError) -> OutpostError:
        reason = str(error) or type(error).__name__
        return OutpostError(f"cannot reach the control plane at {self.url}: {reason}")

    # -- dispatches ------------------------------------------------------------------------

    def dispatch(self, body: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return dict(self.request("POST", "/dispatch", json=body, headers=headers))

    def get(self, dispatch_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/dispatch/{dispatch_id}"))

    def cancel(self, dispatch_id: str) -> dict[str, Any]:
        return dict(self.request("DELETE", f"/dispatch/{dispatch_id}"))

    def list_dispatches(
        self,
        *,
        status: str | None = None,
        agent: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        params = {"status": status, "agent": agent, "limit": limit, "cursor": cursor}
        return dict(
            self.request("GET", "/dispatches", params={k: v for k, v in params.items() if v is not None})
        )

    def logs(self, dispatch_id: str, *, after: int | None = None) -> dict[str, Any]:
        params = {} if after is None else {"after": after}
        return dict(self.request("GET", f"/dispatch/{dispatch_id}/logs", params=params))

    def follow_logs(self, dispatch_id: str) -> Iterator[str]:
        """Log lines as they come, until the dispatch ends."""
        try:
            with self._http.stream(
                "GET", f"/dispatch/{dispatch_id}/logs", params={"follow": "true"}, timeout=None
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise OutpostError(f"{response.status_code}: {_detail(response)}", response.status_code)
                for raw in response.iter_lines():
                    if raw.strip():
                        yield from json.loads(raw)["lines"]
        except httpx.HTTPError as error:
            raise self._unreachable(error) from None

    def wait(
        self,
        dispatch_id: str,
        *,
        timeout_s: float | None = None,
        interval_s: float = 0.5,
        on_change: Callable[[dict[str, Any]], None] | None = None,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Polls until the dispatch ends; ``on_change`` sees each new status, ``on_poll`` every
        answer. A timeout raises ``WaitTimeout`` carrying the last record."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        seen = None
        while True:
            record = self.get(dispatch_id)
            if record["status"] != seen:
                seen = record["status"]
                if on_change is not None:
                    on_change(record)
            if on_poll is not None:
                on_poll(record)
            if record["status"] in TERMINAL:
                return record
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(record, timeout_s or 0)
            time.sleep(interval_s)

    # -- artifacts -------------------------------------------------------------------------

    def artifacts(self, dispatch_id: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/dispatch/{dispatch_id}/artifacts")["items"])

    def fetch(self, item: dict[str, Any]) -> bytes:
        """One artifact's bytes, from its short-lived URL (no API key goes with it)."""
        try:
            response = httpx.get(item["url"], timeout=60.0)
        except httpx.HTTPError as error:
            raise OutpostError(f"cannot download {item['name']}: {error}") from None
        if response.status_code >= 400:
            raise OutpostError(
                f"cannot download {item['name']}: HTTP {response.status_code}", response.status_code
            )
        return response.content

    def read(self, dispatch_id: str, names: Iterable[str] | None = None) -> dict[str, bytes]:
        """The artifacts' bytes by file name (all, or ``names``), each checked against the
        bundle's manifest (sha256 and size); a file that does not match raises."""
        items = {Path(i["name"]).name: i for i in self.artifacts(dispatch_id)}
        wanted = list(items) if names is None else list(names)
        if not wanted:
            raise OutpostError("this dispatch has no artifacts")
        missing = [n for n in wanted if n not in items]
        if missing:
            raise OutpostError(f"no artifact named {missing[0]!r} (it has: {', '.join(items) or 'none'})")
        if MANIFEST not in items:
            raise OutpostError("the bundle has no manifest.json, so its files cannot be verified")
        manifest = self.fetch(items[MANIFEST])
        try:
            expected = json.loads(manifest)["files"]
        except (ValueError, KeyError, TypeError):
            raise OutpostError("the bundle's manifest.json is not a manifest") from None
        contents = {MANIFEST: manifest}
        for name in wanted:
            if name in contents:
                continue
            data = self.fetch(items[name])
            entry = expected.get(name)
            if entry is None:
                raise OutpostError(f"{name} is not in the bundle's manifest")
            digest = hashlib.sha256(data).hexdigest()
            if digest != entry.get("sha256") or len(data) != entry.get("size"):
                raise OutpostError(
                    f"{name} does not match the manifest: sha256 {digest}, {len(data)} bytes; "
                    f"expected {entry.get('sha256')}, {entry.get('size')} bytes"
                )
            contents[name] = data
        return {name: contents[name] for name in wanted}

    def download(self, dispatch_id: str, directory: Path, *, name: str | None = None) -> list[Path]:
        """Writes the artifacts into ``directory``; nothing is written unless every file
        matches the manifest."""
        contents = self.read(dispatch_id, None if name is None else [name])
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for filename, data in contents.items():
            (directory / filename).write_bytes(data)
            written.append(directory / filename)
        return written

    # -- tenants (admin key) ---------------------------------------------------------------

    def create_tenant(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", "/tenants", json=body))

    def list_tenants(self, *, limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        return dict(self.request("GET", "/tenants", params=params))

    def get_tenant(self, tenant_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/tenants/{tenant_id}"))

    def update_tenant(self, tenant_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("PATCH", f"/tenants/{tenant_id}", json=body))

    def rotate_key(self, tenant_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/tenants/{tenant_id}/api-key"))


class WaitTimeout(OutpostError):  # noqa: N818 - an OutpostError that also carries the record
    def __init__(self, record: dict[str, Any], timeout_s: float) -> None:
        super().__init__(f"still {record['status']} after {timeout_s:g} s")
        self.record = record
