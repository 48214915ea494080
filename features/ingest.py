"""Ingest the simulator's raw world into the offline store (the edge of the feature stage).

Reads every raw table with its provenance, normalises it to its canonical table (vendor
telemetry through :mod:`features.vendors`), admits it through validation and deduplication,
and writes clean rows, quarantine and a report under the ``world`` source. Simulator-only truth
(latent traits, market pressure, leading-signal starts) is never ingested.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from closedloop.world import schemas as world
from features import canonical
from features.admission import Admitted, admit
from features.canonical import CanonicalTable
from features.offline import IngestReport, OfflineStore, TableReport
from features.parts import KeyRange, PartedFiles, ranges
from features.quarantine import quarantine_table
from features.validation import Validator
from features.vendors import normalise_aurora, normalise_zenith

SOURCE = "world"
STALE_AFTER = timedelta(days=1)


PART_ROWS = 400_000  # raw rows admitted at a time: what bounds ingest's memory


def raw_files(folder: Path, spec: world.TableSpec, key: str) -> PartedFiles:
    """Every file of one raw table, read a range of ``key`` at a time with provenance."""
    path = folder / spec.path
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    return PartedFiles(files, key, root=folder)


def read_with_provenance(folder: Path, spec: world.TableSpec) -> pd.DataFrame:
    """All files of one raw table, each row tagged with its file and row number."""
    return _frame(raw_files(folder, spec, spec.schema.names[0]), KeyRange(None, None))


def _frame(files: PartedFiles, part: KeyRange) -> pd.DataFrame:
    """One part of a raw table with provenance; integers stay integers in a column with nulls,
    so a quarantined record reads as received whatever else its part holds."""
    return files.read(part, provenance=True).to_pandas(integer_object_nulls=True)


def _canonical(raw: pd.DataFrame, table: CanonicalTable) -> pd.DataFrame:
    """The canonical columns of a raw world table, indexed like it. Date columns become UTC
    midnights, so every time column compares alike in the suites; numbers become the
    canonical float64, which the suites compare a column at a time, not a value at a time."""
    out = raw[[c for c in table.columns if c in raw.columns]].copy()
    for field_ in table.schema:
        if field_.name not in out.columns:
            continue
        if pa.types.is_date32(field_.type):
            out[field_.name] = pd.to_datetime(out[field_.name]).dt.tz_localize("UTC")
        elif pa.types.is_float64(field_.type) and out[field_.name].dtype != "float64":
            out[field_.name] = out[field_.name].astype("float64")
    return out


TABLES: dict[str, tuple[world.TableSpec, CanonicalTable]] = {
    "customers": (world.CUSTOMERS, canonical.CUSTOMERS),
    "experience": (world.EXPERIENCE, canonical.EXPERIENCE),
    "usage": (world.USAGE, canonical.USAGE),
    "tickets": (world.TICKETS, canonical.TICKETS),
    "invoices": (world.INVOICES, canonical.INVOICES),
    "credits": (world.CREDITS, canonical.CREDITS),
    "churn_labels": (world.CHURN, canonical.CHURN_LABELS),
    "cell_fault_labels": (world.INCIDENTS, canonical.CELL_FAULT_LABELS),
}


class _Writer:
    """One canonical table of the source written a part at a time: clean rows in key order
    within each part (parts come in key order), quarantine beside them, and the reports."""

    def __init__(self, run: _Run, table: CanonicalTable) -> None:
        self.run, self.table = run, table
        self.rows = run.store.writer(table.name, SOURCE, table.schema)
        self.quarantine = run.store.quarantine_writer(table.name, SOURCE)

    def write(self, parts: dict[str, Admitted]) -> pa.Table:
        rows = pa.concat_tables([a.rows for a in parts.values()])
        rows = rows.sort_by([(k, "ascending") for k in self.table.keys])
        self.rows.write(rows)
        self.quarantine.write(quarantine_table([a.quarantine for a in parts.values()]))
        for label, admitted in parts.items():
            self.run.add(label, admitted.report)
        return rows

    def close(self) -> None:
        self.rows.close()
        self.quarantine.close()


@dataclass
class _Run:
    """Accumulates what one ingestion admitted, per canonical table."""

    store: OfflineStore
    reports: dict[str, TableReport] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def add(self, label: str, report: TableReport) -> None:
        if (earlier := self.reports.get(label)) is not None:
            report = earlier.plus(report)
        self.reports[label] = report


def _freshness(newest: datetime | None, column: str, as_of: datetime) -> str | None:
    if newest is None:
        return f"no rows with a {column}"
    age = as_of - newest
    return f"newest {column} is {age} before {as_of:%Y-%m-%d %H:%M}" if age > STALE_AFTER else None


def _newest(rows: pa.Table, column: str, newest: datetime | None) -> datetime | None:
    found = pc.max(rows[column]).as_py()
    return found if newest is None or (found is not None and found > newest) else newest


def ingest_world(folder: Path, home: Path, as_of: datetime) -> IngestReport:
    """Ingest the world in ``folder`` into ``home``'s offline store as of ``as_of`` (UTC), one
    part (a range of customer or cell ids, :data:`PART_ROWS` rows or so) at a time."""
    run = _Run(OfflineStore(home))
    validator = Validator()

    raw_cells = read_with_provenance(folder, world.CELLS)
    cells = admit(
        canonical.CELLS, raw_cells, _canonical(raw_cells, canonical.CELLS), pd.Series(dtype=str),
        validator, as_of,
    )  # fmt: skip
    writer = _Writer(run, canonical.CELLS)
    writer.write({"cells": cells})
    writer.close()
    inventory = cells.rows.to_pandas()
    known_cells = inventory["cell_id"].tolist()
    zones = dict(zip(inventory["cell_id"], inventory["timezone"], strict=True))

    vendors = {
        "aurora": (raw_files(folder, world.AURORA_TELEMETRY, "cell_id"), normalise_aurora),
        "zenith": (
            raw_files(folder, world.ZENITH_TELEMETRY, "NE_ID"),
            lambda raw: normalise_zenith(raw, zones),
        ),
    }
    writer = _Writer(run, canonical.CELL_TELEMETRY)
    for vendor in vendors:  # a vendor with no rows is reported too
        run.add(f"cell_telemetry ({vendor})", TableReport(read=0, ingested=0, quarantined=0))
    newest = None
    for part in ranges([files.key_counts() for files, _ in vendors.values()], PART_ROWS):
        telemetry = {}
        for vendor, (files, normalise) in vendors.items():
            raw = _frame(files, part)
            if len(raw):
                normalised, rejected = normalise(raw)
                telemetry[f"cell_telemetry ({vendor})"] = admit(
                    canonical.CELL_TELEMETRY, raw, normalised, rejected, validator, as_of,
                    known_cells, arrival="received_at",
                )  # fmt: skip
            del raw
        if telemetry:
            newest = _newest(writer.write(telemetry), "ts", newest)
    writer.close()
    if (stale := _freshness(newest, "ts", as_of)) is not None:
        run.warnings.append(f"cell_telemetry: {stale}")

    for name, (spec, table) in TABLES.items():
        files = raw_files(folder, spec, table.keys[0])
        writer = _Writer(run, table)
        for part in files.ranges(PART_ROWS):
            raw = _frame(files, part)
            writer.write(
                {name: admit(table, raw, _canonical(raw, table), pd.Series(dtype=str), validator,
                             as_of, known_cells)}
            )  # fmt: skip
            del raw
        writer.close()

    report = IngestReport(source=SOURCE, tables=run.reports, warnings=run.warnings)
    run.store.write_report(report)
    return report
