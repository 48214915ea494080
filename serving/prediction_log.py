"""The prediction log's writer: scored batches queue in memory, a background thread writes Parquet.

Requests only put rows on a queue. The writer thread turns what has queued into one Parquet
part per model every ``flush_seconds`` (or sooner when ``flush_rows`` are waiting), written
to a temporary name and renamed, so readers never see half a file. ``close`` drains the queue
and writes the rest: a graceful shutdown loses nothing.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from closedloop.predictions import PredictionBatch, log_folder, log_schema, log_table

if TYPE_CHECKING:
    from serving.champion import Champion

log = logging.getLogger("closedloop.serving")
_TICK = object()  # the queue stayed empty until the next flush was due


class PredictionLog:
    def __init__(self, home: Path, flush_rows: int = 2_000, flush_seconds: float = 1.0) -> None:
        self.home = home
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.written = 0
        self._schemas: dict[tuple[str, str], pa.Schema] = {}
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._parts = itertools.count()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def append(self, champion: Champion, batch: PredictionBatch) -> None:
        """Queue what a champion scored for writing; returns at once."""
        if len(batch):
            key = (champion.name, champion.version)
            if key not in self._schemas:
                model = champion.model
                schema = log_schema(model.features, model.categories, model.classes)
                self._schemas[key] = schema
            self._queue.put((champion.name, self._schemas[key], batch))

    def close(self) -> None:
        """Write everything queued, then stop the writer."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        pending: dict[tuple[str, pa.Schema], list[PredictionBatch]] = {}
        waiting = 0
        due = time.monotonic() + self.flush_seconds
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, due - time.monotonic()))
            except queue.Empty:
                item = _TICK
            if item is None:
                self._flush(pending)
                return
            if item is not _TICK:
                model, schema, batch = item
                pending.setdefault((model, schema), []).append(batch)
                waiting += len(batch)
            if waiting >= self.flush_rows or time.monotonic() >= due:
                self._flush(pending)
                pending, waiting = {}, 0
                due = time.monotonic() + self.flush_seconds

    def _flush(self, pending: dict[tuple[str, pa.Schema], list[PredictionBatch]]) -> None:
        for (model, schema), batches in pending.items():
            try:
                self._write(model, log_table(batches, schema))
            except Exception:  # keep serving; the error and the row count go to the log
                rows = sum(len(batch) for batch in batches)
                log.exception("could not write %d prediction rows of %s", rows, model)

    def _write(self, model: str, table: pa.Table) -> None:
        folder = log_folder(self.home, model)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = folder / f"part-{stamp}-{os.getpid()}-{next(self._parts):06d}.parquet"
        partial = path.with_suffix(".partial")
        pq.write_table(table, partial)
        partial.replace(path)
        self.written += table.num_rows
