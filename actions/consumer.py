"""A consumer of the event stream (``closedloop consume``): read a batch, decide and commit it in
one ledger transaction through the runtime, then acknowledge it.

An entry is acknowledged only after its decisions committed; one read again after a crash
(by this consumer, or by another that took it over once it sat idle) is a duplicate the
ledger already knows, so nothing is decided twice. When a batch fails, its entries are tried
one by one, so one bad entry does not hold the others back; an entry handed out more than
``max_deliveries`` times goes to the dead-letter stream with its last error. A failure of the
ledger or the stream itself (:func:`transient`: busy, unreachable) is no fault of the entries:
the consumer keeps the batch, reopens its runtime after a growing pause and tries the same
batch again without reading, so an outage does not use up deliveries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import groupby

from actions.ledger import LedgerBusyError
from actions.runtime import Runtime
from actions.streams import EventStream, StreamEntry, entry_record

log = logging.getLogger("closedloop.actions")
MAX_PAUSE = 30.0


def transient(error: BaseException) -> bool:
    """A failure of the ledger or the stream (busy, unreachable, connection lost), not of the
    entries being processed."""
    import sqlite3

    if isinstance(error, LedgerBusyError | sqlite3.OperationalError | OSError):
        return True
    import psycopg
    import redis

    return isinstance(error, psycopg.OperationalError | redis.ConnectionError | redis.TimeoutError)


@dataclass
class Consumer:
    stream: EventStream
    open_runtime: Callable[[], Runtime]
    name: str
    max_deliveries: int = 5
    batch: int = 200
    block_seconds: float = 1.0
    trim_seconds: float = 1.0
    counts: Counter[str] = field(default_factory=Counter)  # entries by what became of them
    _runtime: Runtime | None = None
    _trimmed_at: float = 0.0
    _held: list[StreamEntry] = field(default_factory=list)  # to try again after an outage

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = self.open_runtime()
        return self._runtime

    def step(self) -> int:
        """Read one batch and settle it; how many entries were read. Raises when every entry
        of the batch failed."""
        runtime = self.runtime  # (re)opened before reading, so an outage uses no delivery
        held, self._held = self._held, []
        entries = held or self.stream.read(self.name, self.batch, self.block_seconds)
        if not entries:
            self._trim()
            return 0
        live: list[StreamEntry] = []
        gone: list[str] = []
        for entry in entries:
            if entry.event is None:  # trimmed before it was read: nothing left to decide
                gone.append(entry.entry_id)
            elif entry.deliveries > self.max_deliveries:
                self.stream.dead_letter(entry, self.name)
                self.counts["dead_lettered"] += 1
            else:
                live.append(entry)
        self.stream.ack(gone)
        if live:
            try:
                self._settle(runtime, live)
            except Exception as error:
                if transient(error):
                    self._held = live  # the same batch again (what committed is a duplicate)
                raise
        self._trim()
        return len(entries)

    def _settle(self, runtime: Runtime, entries: list[StreamEntry]) -> None:
        try:
            self._take(runtime, entries)
            return
        except Exception as error:
            if transient(error):
                raise
            if len(entries) == 1:
                self.stream.fail(entries[0].entry_id, f"{type(error).__name__}: {error}")
                raise
            log.warning("a batch of %d failed (%s); trying each entry", len(entries), error)
        failed: Exception | None = None
        done = 0
        for entry in entries:
            try:
                self._take(runtime, [entry])
                done += 1
            except Exception as error:
                if transient(error):
                    raise
                self.stream.fail(entry.entry_id, f"{type(error).__name__}: {error}")
                failed = error
        if not done and failed is not None:
            raise failed

    def _take(self, runtime: Runtime, entries: list[StreamEntry]) -> None:
        """Commit the entries, each run of one sender's in one ledger transaction under that
        sender (its id scope and its principal's label), then acknowledge them."""
        for (sender, by), run in groupby(entries, key=lambda e: (e.sender, e.by)):
            same = list(run)
            records = [entry_record(self.stream.name, e) for e in same]
            outcomes = runtime.take(records, sender=sender, by=by)
            self.stream.ack([e.entry_id for e in same])  # only once it committed
            self.counts.update(o.outcome for o in outcomes)

    def _trim(self) -> None:
        if time.monotonic() - self._trimmed_at >= self.trim_seconds:
            self.stream.trim()
            self._trimmed_at = time.monotonic()

    def run(self, stop: threading.Event) -> Counter[str]:
        """Consume until ``stop``; a failure (the stream or the ledger unreachable) closes the
        runtime and tries again after a pause that doubles up to 30 s."""
        pause = 0.5
        try:
            while not stop.is_set():
                try:
                    self.step()
                    pause = 0.5
                except Exception:
                    log.exception("consuming failed; trying again in %.1f s", pause)
                    self.close()
                    stop.wait(pause)
                    pause = min(pause * 2, MAX_PAUSE)
        finally:
            self.close()
        return self.counts

    def close(self) -> None:
        if self._runtime is not None:
            runtime, self._runtime = self._runtime, None
            try:
                runtime.close()
            except Exception:
                log.exception("closing the runtime failed")
