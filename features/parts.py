"""Large Parquet tables a part at a time: ranges of a key that keep every row of a key together.

Ingest and the feature build hold one part in memory, never a whole table, so their peak memory
is bounded by a part's, not by the number of customers or cells. A part is a half-open range of
one key column (a customer or cell id); every row with that key, whatever file or row group it
sits in, falls in the same part, so per-key work (deduplication, counter differencing, windows)
done a part at a time gives the answers it gives on the whole table. Row groups whose
statistics show they hold no key of the range are skipped, so a file sorted by the key is read
about once whatever the number of parts.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.quarantine import SOURCE, SOURCE_ROW


@dataclass(frozen=True)
class KeyRange:
    """Keys ``low <= key < high``; an open end is None. The range open below holds null keys."""

    low: str | None
    high: str | None

    def mask(self, keys: pa.Array) -> pa.Array:
        inside = pa.array(np.ones(len(keys), dtype=bool))
        if self.low is not None:
            inside = pc.and_(inside, pc.fill_null(pc.greater_equal(keys, self.low), False))
        if self.high is not None:
            below = pc.less(keys, self.high)
            inside = pc.and_(inside, below if self.low is not None else pc.fill_null(below, True))
        return inside

    def may_hold(self, statistics: pq.Statistics | None) -> bool:
        """Whether a row group with these statistics of the key may hold a key of the range."""
        if statistics is None or not statistics.has_min_max:
            return True
        if self.low is None and statistics.null_count:
            return True
        above = self.low is None or statistics.max >= self.low
        below = self.high is None or statistics.min < self.high
        return above and below


def ranges(counted: list[pa.Table], rows_per_part: int) -> list[KeyRange]:
    """Consecutive ranges over the distinct keys of ``counted`` (tables of ``key`` and ``rows``,
    a key may repeat) holding about ``rows_per_part`` rows each; a key's rows are never split."""
    table = pa.concat_tables(counted).group_by("key").aggregate([("rows", "sum")])
    table = table.sort_by("key")
    keys, counts = table["key"], table["rows_sum"].to_numpy()
    before = np.cumsum(counts) - counts  # rows in the keys before each one
    total = int(counts.sum())
    targets = np.arange(rows_per_part, total, rows_per_part)
    starts = np.unique(np.searchsorted(before, targets, side="left"))
    starts = starts[(starts > 0) & (starts < len(keys))]
    return split_at([keys[int(i)].as_py() for i in starts])


def split_at(bounds: list[str]) -> list[KeyRange]:
    """The ranges below the first of the sorted ``bounds``, between each two, and above the last:
    together they hold every key."""
    ends = [None, *bounds, None]
    return [KeyRange(low, high) for low, high in itertools.pairwise(ends)]


class PartedFiles:
    """The Parquet files of one table, read a key range at a time."""

    def __init__(self, files: list[Path], key: str, root: Path | None = None) -> None:
        self.key = key
        self._files = [pq.ParquetFile(f) for f in files]
        self._names = [str(f.relative_to(root)) if root else str(f) for f in files]

    def __len__(self) -> int:
        return len(self._files)

    @property
    def schema(self) -> pa.Schema:
        return self._files[0].schema_arrow

    def key_counts(self) -> pa.Table:
        """Each distinct non-null key (``key``) and its number of rows (``rows``), per row group."""
        counted = [
            pc.value_counts(parquet.read_row_group(group, columns=[self.key]).column(0)).flatten()
            for parquet in self._files
            for group in range(parquet.num_row_groups)
        ]
        table = pa.Table.from_arrays(
            [
                pa.concat_arrays([c[0] for c in counted] or [pa.array([], pa.string())]),
                pa.concat_arrays([c[1] for c in counted] or [pa.array([], pa.int64())]),
            ],
            names=["key", "rows"],
        )
        return table.filter(pc.is_valid(table["key"]))

    def column_chunks(self, columns: list[str]) -> Iterator[pa.Table]:
        """``columns`` of every row, a row group at a time."""
        for parquet in self._files:
            for group in range(parquet.num_row_groups):
                yield parquet.read_row_group(group, columns=columns)

    def ranges(self, rows_per_part: int) -> list[KeyRange]:
        return ranges([self.key_counts()], rows_per_part)

    def read(
        self, part: KeyRange, columns: list[str] | None = None, provenance: bool = False
    ) -> pa.Table:
        """The rows of the range, in file then row order; with ``provenance``, each tagged with
        its file (relative to ``root``) and 0-based row in it."""
        pieces = []
        for parquet, name in zip(self._files, self._names, strict=True):
            metadata = parquet.metadata
            index = parquet.schema_arrow.get_field_index(self.key)
            first_row = 0
            for group in range(metadata.num_row_groups):
                rows = metadata.row_group(group).num_rows
                statistics = metadata.row_group(group).column(index).statistics
                if rows and part.may_hold(statistics):
                    table = parquet.read_row_group(group, columns=columns)
                    keys = table[self.key] if self.key in table.column_names else None
                    if keys is None:
                        keys = parquet.read_row_group(group, columns=[self.key]).column(0)
                    inside = np.flatnonzero(part.mask(keys.combine_chunks()).to_numpy(False))
                    if len(inside):
                        table = table.take(pa.array(inside))
                        if provenance:
                            table = table.append_column(
                                SOURCE, pa.array(np.full(len(inside), name), pa.string())
                            ).append_column(SOURCE_ROW, pa.array(first_row + inside, pa.int64()))
                        pieces.append(table)
                first_row += rows
        if not pieces:
            fields = [self.schema.field(c) for c in columns or self.schema.names]
            if provenance:
                fields += [pa.field(SOURCE, pa.string()), pa.field(SOURCE_ROW, pa.int64())]
            return pa.schema(fields).empty_table()
        return pa.concat_tables(pieces)


class PartWriter:
    """A Parquet file written a part (a row group or more) at a time beside its final place,
    and moved there whole on :meth:`close`, so a reader never sees half a file."""

    ROW_GROUP = 131_072  # rows: small enough that a reader of a key range skips most groups

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.schema, self._partial = path, schema, path.with_suffix(".partial")
        self._writer = pq.ParquetWriter(self._partial, schema, compression="zstd")

    def write(self, rows: pa.Table) -> None:
        self._writer.write_table(rows, row_group_size=self.ROW_GROUP)

    def close(self) -> Path:
        self._writer.close()
        self._partial.replace(self.path)
        return self.path
