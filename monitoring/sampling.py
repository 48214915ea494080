"""Seeded samples of large Parquet windows, read column by column.

``read_sample(path, rows, seed)`` returns exactly the rows ``drift.sample(read(path), rows, seed)``
would, holding no more than one column of one row group in memory at a time.
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


def read_sample(path: Path, rows: int, seed: int, columns: list[str] | None = None) -> pd.DataFrame:
    """The seeded sample of a Parquet file's rows, one column of one row group at a time."""
    file = pq.ParquetFile(path)
    names = columns or file.schema_arrow.names
    wanted = sample_positions(file.metadata.num_rows, rows, seed)
    kept: dict[str, list[pa.Array]] = {name: [] for name in names}
    offset = 0
    for group in range(file.metadata.num_row_groups):
        size = file.metadata.row_group(group).num_rows
        lo, hi = np.searchsorted(wanted, [offset, offset + size])
        if hi > lo:
            take = pa.array(wanted[lo:hi] - offset)
            for name in names:
                column = file.read_row_group(group, [name], use_threads=False).column(0)
                kept[name].append(column.take(take).combine_chunks())
        offset += size
    schema = pa.schema([file.schema_arrow.field(name) for name in names])
    arrays = [pa.chunked_array(kept[name], type=schema.field(name).type) for name in names]
    return pa.Table.from_arrays(arrays, schema=schema).to_pandas()
