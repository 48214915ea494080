"""Seeded samples of large Parquet windows, read column by column.

``read_sample(path, rows, seed)`` returns exactly the rows ``drift.sample(read(path), rows, seed)``
would, holding no more than one column of one row group in memory at a time;
:class:`PartsWindow` does the same for the rows of several files a filter keeps (the prediction
log's parts within a window), and counts missing values over all of them column by column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def sample_positions(total: int, rows: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded sample of ``rows`` out of ``total`` (all when fewer)."""
    if total <= rows:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, rows, replace=False))


def read_sample(path: Path, rows: int, seed: int, columns: list[str] | None = None) -> pd.DataFrame:
    """The seeded sample of a Parquet file's rows, one column of one row group at a time."""
    total = pq.ParquetFile(path).metadata.num_rows
    return read_rows(path, sample_positions(total, rows, seed), columns)


def read_rows(path: Path, wanted: np.ndarray, columns: list[str] | None = None) -> pd.DataFrame:
    """The rows at the sorted positions ``wanted`` of a Parquet file, one column of one row
    group at a time."""
    file = pq.ParquetFile(path)
    names = columns or file.schema_arrow.names
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


@dataclass(frozen=True)
class PartsWindow:
    """The rows a filter keeps in several Parquet files, in file order, read only as asked."""

    parts: list[Path]
    kept: list[np.ndarray]  # per part: which of its rows are in the window

    @classmethod
    def whole(cls, path: Path) -> PartsWindow:
        """Every row of one file."""
        return cls([path], [np.ones(pq.ParquetFile(path).metadata.num_rows, dtype=bool)])

    @property
    def rows(self) -> int:
        return int(sum(keep.sum() for keep in self.kept))

    def read(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The window's rows whole (of ``columns``, default all)."""
        frames = [
            pq.read_table(part, columns=columns).to_pandas()[keep]
            for part, keep in zip(self.parts, self.kept, strict=True)
        ]
        return pd.concat(frames, ignore_index=True)

    def sample(self, rows: int, seed: int, columns: list[str] | None = None) -> pd.DataFrame:
        """Exactly the rows ``drift.sample(self.read(columns), rows, seed)`` would pick, read
        one column of one row group at a time."""
        counts = [int(keep.sum()) for keep in self.kept]
        chosen = sample_positions(sum(counts), rows, seed)
        frames, offset = [], 0
        for part, keep, count in zip(self.parts, self.kept, counts, strict=True):
            lo, hi = np.searchsorted(chosen, [offset, offset + count])
            if hi > lo:
                positions = np.flatnonzero(keep)[chosen[lo:hi] - offset]
                frames.append(read_rows(part, positions, columns))
            offset += count
        return pd.concat(frames, ignore_index=True)

    def missing_share(self, columns: list[str]) -> dict[str, float]:
        """Per column, the share of the window's rows where it is missing (null or NaN), one
        column of one part at a time."""
        missing = dict.fromkeys(columns, 0)
        for part, keep in zip(self.parts, self.kept, strict=True):
            mask = pa.array(keep)
            for name in columns:
                column = pq.read_table(part, columns=[name]).column(0).filter(mask)
                missing[name] += pc.sum(pc.is_null(column, nan_is_null=True)).as_py() or 0
        return {name: missing[name] / self.rows for name in columns}
