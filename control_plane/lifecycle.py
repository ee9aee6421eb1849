"""The dispatch lifecycle: the one transition table, and the one function that applies it.

PENDING -> RUNNING -> COMPLETED | FAILED | TIMED_OUT | CANCELLED.
A claim moves a dispatch from PENDING to RUNNING in one conditional write, so there is no
state between them. A task that stops without reporting (e.g. a Spot interruption) may be
requeued: RUNNING -> PENDING, with the attempt counter raised by the store. Terminal states
are final.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


class Status(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    CANCELLED = "CANCELLED"


TERMINAL: frozenset[Status] = frozenset({Status.COMPLETED, Status.FAILED, Status.TIMED_OUT, Status.CANCELLED})
# The statuses a tenant's quota counts as waiting and as running.
QUEUED: frozenset[Status] = frozenset({Status.PENDING})
ACTIVE: frozenset[Status] = frozenset({Status.RUNNING})

TRANSITIONS: Mapping[Status, frozenset[Status]] = MappingProxyType(
    {
        # FAILED from PENDING: a job that can never start (e.g. no capacity until its deadline)
        Status.PENDING: frozenset({Status.RUNNING, Status.CANCELLED, Status.FAILED}),
        Status.RUNNING: frozenset(
            {Status.COMPLETED, Status.FAILED, Status.TIMED_OUT, Status.CANCELLED, Status.PENDING}
        ),
        **{status: frozenset() for status in TERMINAL},
    }
)


class IllegalTransitionError(ValueError):
    def __init__(self, current: Status, to: Status) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none, it is final"
        super().__init__(f"a {current} dispatch cannot become {to} (allowed: {allowed})")
        self.current = current
        self.to = to


def transition(current: Status | str, to: Status | str) -> Status:
    """Return the new status if `current -> to` is legal; raise IllegalTransitionError otherwise."""
    current, to = Status(current), Status(to)
    if to not in TRANSITIONS[current]:
        raise IllegalTransitionError(current, to)
    return to


def is_requeue(current: Status | str, to: Status | str) -> bool:
    return Status(to) is Status.PENDING and Status(current) is not Status.PENDING
