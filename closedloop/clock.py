"""The clock a run's decisions, scores and approvals read: the wall clock, or one started at a
chosen instant (a simulated world's end) and running at wall speed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime


def running_clock(start: datetime | None) -> Callable[[], datetime]:
    """Wall-clock time, or a clock that starts at ``start`` now and runs at wall speed."""
    if start is None:
        return lambda: datetime.now(UTC)
    offset = start - datetime.now(UTC)
    return lambda: datetime.now(UTC) + offset
