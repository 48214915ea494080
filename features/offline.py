"""The offline store on disk: canonical tables as Parquet, one file per source, plus quarantine.

Layout under the home folder::

    offline/<table>/<source>.parquet      clean rows of a canonical table from one source
    quarantine/<table>/<source>.parquet   rejected rows with their reasons and origin
    offline/_reports/<source>.json        what the last ingestion of that source did
    offline/_attributes/<table>/<source>.parquet   a mapping's extra columns of an entity

A source is ``world`` for the simulator's raw data, or the name of an imported file's mapping.
Writing a source replaces its previous files, so ingesting the same input twice changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from closedloop.home import Home
from closedloop.models import DataShape
from features.canonical import QUARANTINE, TABLES, CanonicalTable
from features.parts import KeyRange, PartedFiles, PartWriter


class TableReport(BaseModel):
    """What happened to one table's rows: read = ingested + quarantined."""

    read: int
    ingested: int
    quarantined: int
    reasons: dict[str, int] = Field(default_factory=dict)

    def plus(self, other: TableReport) -> TableReport:
        """The report of both parts of a table together."""
        reasons = dict(self.reasons)
        for reason, n in other.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + n
        return TableReport(
            read=self.read + other.read,
            ingested=self.ingested + other.ingested,
            quarantined=self.quarantined + other.quarantined,
            reasons=dict(sorted(reasons.items())),
        )


class IngestReport(BaseModel):
    source: str
    shape: DataShape = DataShape.TIME_SERIES  # snapshot: one row per entity, no time axis
    tables: dict[str, TableReport]
    classes: dict[str, list[str]] = Field(
        default_factory=dict, description="a multi-class target's classes, by label table"
    )
    warnings: list[str] = Field(default_factory=list)
    mapped: dict[str, str] = Field(
        default_factory=dict, description="each source column a mapping reads: where it goes"
    )


def to_arrow(table: CanonicalTable, frame: pd.DataFrame) -> pa.Table:
    """``frame``'s canonical columns cast to the table's schema (missing columns become null)."""
    arrays = []
    for field in table.schema:
        if field.name in frame.columns:
            values = pa.array(frame[field.name], from_pandas=True)
            arrays.append(values.cast(field.type) if values.type != field.type else values)
        else:
            arrays.append(pa.nulls(len(frame), field.type))
    return pa.Table.from_arrays(arrays, schema=table.schema)


class OfflineStore:
    def __init__(self, home: Path) -> None:
        self.paths = Home.at(home)

    def table_path(self, table: str) -> Path:
        return self.paths.offline_table(table)

    def write(self, table: CanonicalTable, source: str, rows: pa.Table) -> Path:
        path = self.table_path(table.name) / f"{source}.parquet"
        _atomic_parquet(rows, path)
        return path

    def writer(self, table: str, source: str, schema: pa.Schema) -> PartWriter:
        """A writer of a source's clean rows of ``table``, appended a part at a time."""
        return PartWriter(self.table_path(table) / f"{source}.parquet", schema)

    def quarantine_writer(self, table: str, source: str) -> PartWriter:
        return PartWriter(self.paths.quarantine_table(table) / f"{source}.parquet", QUARANTINE)

    def write_quarantine(self, table: str, source: str, rows: pa.Table) -> Path:
        path = self.paths.quarantine_table(table) / f"{source}.parquet"
        _atomic_parquet(rows, path)
        return path

    def attributes_path(self, table: str) -> Path:
        return self.paths.offline / "_attributes" / table

    def write_attributes(self, source: str, attributes: dict[str, pd.DataFrame]) -> None:
        """The source's entity attributes, one file per table; earlier ones of the source go."""
        for old in self.paths.offline.glob(f"_attributes/*/{source}.parquet"):
            old.unlink()
        for table, frame in attributes.items():
            rows = pa.Table.from_pandas(frame, preserve_index=False)
            _atomic_parquet(rows, self.attributes_path(table) / f"{source}.parquet")

    def read_attributes(self, table: str) -> dict[str, pd.DataFrame]:
        """Each source's attributes of ``table``'s entities: {source: key and attribute columns}."""
        files = sorted(self.attributes_path(table).glob("*.parquet"))
        return {f.stem: pq.read_table(f).to_pandas() for f in files}

    def write_report(self, report: IngestReport) -> Path:
        path = self.paths.ingest_reports / f"{report.source}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report.model_dump_json(indent=2) + "\n")
        return path

    def read(self, table: str, columns: list[str] | None = None) -> pd.DataFrame:
        """All sources of a canonical table; an empty frame of the right columns if none."""
        spec = TABLES[table]
        files = sorted(self.table_path(table).glob("*.parquet"))
        if not files:
            return spec.schema.empty_table().to_pandas()[columns or spec.columns]
        return pq.ParquetDataset(files).read(columns=columns).to_pandas()

    def parted(self, table: str, key: str) -> PartedFiles:
        """Every source of a canonical table, read a range of ``key`` at a time."""
        return PartedFiles(sorted(self.table_path(table).glob("*.parquet")), key)

    def read_part(
        self, table: str, key: str, part: KeyRange, columns: list[str] | None = None
    ) -> pd.DataFrame:
        """The rows of every source of a canonical table whose ``key`` is in ``part``."""
        files = self.parted(table, key)
        if not files:
            return self.read(table, columns)
        return files.read(part, columns).to_pandas()

    def read_quarantine(self, table: str) -> pd.DataFrame:
        files = sorted(self.paths.quarantine_table(table).glob("*.parquet"))
        return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)

    def reports(self) -> list[IngestReport]:
        return [
            IngestReport.model_validate_json(p.read_text())
            for p in sorted(self.paths.ingest_reports.glob("*.json"))
        ]


def _atomic_parquet(rows: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    pq.write_table(rows, partial, compression="zstd")
    partial.replace(path)
