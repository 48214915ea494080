"""Load shedding: a bounded intake per kind of work, and the answer of a service that cannot take
more work now: 503 with ``Retry-After``, at once, rather than a wait past the client's timeout
(a 504 whose fate the client cannot know).

Work runs on the intake's own threads, never on the event loop, so liveness, readiness and the
refusals themselves answer while a worker scores a large batch or commits events. The service's
door (:mod:`serving.access`) refuses a request whose intake is full before checking its key, so
a refusal costs no trip to the key store's thread.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import TypeVar

from starlette.responses import JSONResponse

from serving.api import RequestError

T = TypeVar("T")
KINDS = {
    "/events": "events",
    "/churn/score": "scoring",
    "/fault/score": "scoring",
    "/churn/what-if": "scoring",
    "/fault/what-if": "scoring",
}
"""The kind of work of each POST route that has an intake."""


def retry_later(code: str, message: str, seconds: float = 1.0) -> JSONResponse:
    """503 with ``Retry-After`` (whole seconds): nothing was done, sending it again is safe."""
    error = RequestError(503, code, f"{message}; nothing was done, try again")
    return JSONResponse(
        error.body(),
        status_code=error.status,
        headers={"Retry-After": str(max(1, math.ceil(seconds)))},
    )


class Intake:
    """At most ``limit`` requests of one kind held at once (running or waiting for the ledger),
    each on a thread of its own; one more is refused before any of its work starts. Counted on
    the event loop, which is the only caller of :meth:`admit` and :meth:`run`."""

    def __init__(self, kind: str, limit: int) -> None:
        self.kind, self.limit, self.held = kind, limit, 0
        self._threads = ThreadPoolExecutor(limit, thread_name_prefix=f"closedloop-{kind}")

    @property
    def full(self) -> bool:
        return self.held >= self.limit

    def admit(self) -> bool:
        """Whether one more request may be held now (it is then counted until it finishes)."""
        if self.full:
            return False
        self.held += 1
        return True

    async def run(self, work: Callable[[], T]) -> T:
        """``work`` of an admitted request, on one of the intake's threads."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._threads, work)
        finally:
            self.held -= 1

    def busy(self) -> JSONResponse:
        """The refusal of a request beyond the bound (counted in the service's metrics)."""
        from serving.metrics import service_metrics

        service_metrics().shed.labels(kind=self.kind).inc()
        return retry_later(
            "overloaded", f"this worker already holds {self.limit} {self.kind} request(s)"
        )

    def close(self) -> None:
        self._threads.shutdown(wait=True, cancel_futures=True)


@cache
def intakes(limit: int) -> dict[str, Intake]:
    """This worker's intakes by kind, made on the first call: the service's and its door's."""
    return {kind: Intake(kind, limit) for kind in sorted(set(KINDS.values()))}
