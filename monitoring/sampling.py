"""Seeded samples of large Parquet windows, read a record batch at a time.

``read_sample(path, rows, seed)`` returns exactly the rows ``drift.sample(read(path), rows, seed)``
would, without ever holding the whole file in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def sample_positions(total: int, rows: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded sample of ``rows`` out of ``total`` (all when fewer)."""
    if total <= rows:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, rows, replace=False))


def read_sample(
    path: Path, rows: int, seed: int, columns: list[str] | None = None, batch_rows: int = 65_536
) -> pd.DataFrame:
    """The seeded sample of a Parquet file's rows, batch by batch."""
    file = pq.ParquetFile(path)
    wanted = sample_positions(file.metadata.num_rows, rows, seed)
    kept, offset = [], 0
    for batch in file.iter_batches(batch_size=batch_rows, columns=columns):
        lo, hi = np.searchsorted(wanted, [offset, offset + batch.num_rows])
        if hi > lo:
            kept.append(batch.take(pa.array(wanted[lo:hi] - offset)))
        offset += batch.num_rows
    if not kept:
        empty = file.schema_arrow.empty_table()
        return (empty.select(columns) if columns else empty).to_pandas()
    return pa.Table.from_batches(kept).to_pandas()
