"""Ships log lines to the control plane in batches while the job runs.

A batch goes out every ``interval_s`` or as soon as ``max_lines`` are waiting. Shipping must
never slow the agent or fail the job: a batch that cannot be delivered after a few tries is
dropped (and counted), and a full queue drops new lines (also counted).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable

LINE_MAX_CHARS = 8192
BATCH_MAX_CHARS = 256 * 1024
_CLOSE = object()


class LogShipper:
    def __init__(
        self,
        send: Callable[[list[str]], None],
        *,
        interval_s: float = 0.5,
        max_lines: int = 50,
        attempts: int = 3,
        capacity: int = 20_000,
    ) -> None:
        self._send = send
        self._interval_s = interval_s
        self._max_lines = max_lines
        self._attempts = attempts
        self._queue: queue.Queue[object] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name="log-shipper", daemon=True)
        self.dropped = 0
        self._closing_deadline: float | None = None

    def start(self) -> None:
        self._thread.start()

    def add(self, line: str) -> None:
        if len(line) > LINE_MAX_CHARS:
            line = line[: LINE_MAX_CHARS - 15] + " …[truncated]"
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            self.dropped += 1

    def close(self, timeout: float) -> None:
        """Flushes what is queued, giving up after ``timeout`` seconds."""
        self._closing_deadline = time.monotonic() + timeout
        try:
            self._queue.put(_CLOSE, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout=timeout)

    def _run(self) -> None:
        closed = False
        while not closed:
            batch: list[str] = []
            size = 0
            first = self._queue.get()
            flush_at = time.monotonic() + self._interval_s
            item = first
            while True:
                if item is _CLOSE:
                    closed = True
                    break
                assert isinstance(item, str)
                batch.append(item)
                size += len(item)
                if len(batch) >= self._max_lines or size >= BATCH_MAX_CHARS:
                    break
                try:
                    item = self._queue.get(timeout=max(0.0, flush_at - time.monotonic()))
                except queue.Empty:
                    break
            if batch:
                self._deliver(batch)

    def _deliver(self, batch: list[str]) -> None:
        for attempt in range(self._attempts):
            try:
                self._send(batch)
                return
            except Exception as exc:  # noqa: BLE001 - logs are best effort; the job goes on
                error = exc
            if self._closing_deadline is not None and time.monotonic() >= self._closing_deadline:
                break
            time.sleep(0.5 * (attempt + 1))
        self.dropped += len(batch)
        print(f"outpost runner: dropped {len(batch)} log lines: {error}", file=sys.stderr)
