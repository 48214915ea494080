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
import pyarrow.parquet as pq

from closedloop.world import schemas as world
from features import canonical
from features.admission import Admitted, admit
from features.canonical import CanonicalTable
from features.offline import IngestReport, OfflineStore, TableReport
from features.quarantine import quarantine_table, with_provenance
from features.validation import Validator
from features.vendors import normalise_aurora, normalise_zenith

SOURCE = "world"
STALE_AFTER = timedelta(days=1)


def read_with_provenance(folder: Path, spec: world.TableSpec) -> pd.DataFrame:
    """All files of one raw table, each row tagged with its file and row number."""
    path = folder / spec.path
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    frames = [
        with_provenance(pq.read_table(f).to_pandas(), str(f.relative_to(folder))) for f in files
    ]
    return pd.concat(frames, ignore_index=True)


def _canonical(raw: pd.DataFrame, table: CanonicalTable) -> pd.DataFrame:
    """The canonical columns of a raw world table, indexed like it. Date columns become UTC
    midnights, so every time column compares alike in the suites."""
    out = raw[[c for c in table.columns if c in raw.columns]].copy()
    for field_ in table.schema:
        if pa.types.is_date32(field_.type) and field_.name in out.columns:
            out[field_.name] = pd.to_datetime(out[field_.name]).dt.tz_localize("UTC")
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


@dataclass
class _Run:
    """Accumulates what one ingestion admitted, per canonical table."""

    store: OfflineStore
    reports: dict[str, TableReport] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def write(self, table: CanonicalTable, parts: dict[str, Admitted]) -> None:
        rows = pa.concat_tables([a.rows for a in parts.values()])
        rows = rows.sort_by([(k, "ascending") for k in table.keys])
        self.store.write(table, SOURCE, rows)
        self.store.write_quarantine(
            table.name, SOURCE, quarantine_table([a.quarantine for a in parts.values()])
        )
        for label, admitted in parts.items():
            self.reports[label] = admitted.report


def _freshness(rows: pa.Table, column: str, as_of: datetime) -> str | None:
    newest = pc.max(rows[column]).as_py()
    if newest is None:
        return f"no rows with a {column}"
    age = as_of - newest
    return f"newest {column} is {age} before {as_of:%Y-%m-%d %H:%M}" if age > STALE_AFTER else None


def ingest_world(folder: Path, home: Path, as_of: datetime) -> IngestReport:
    """Ingest the world in ``folder`` into ``home``'s offline store as of ``as_of`` (UTC)."""
    run = _Run(OfflineStore(home))
    validator = Validator()

    raw_cells = read_with_provenance(folder, world.CELLS)
    cells = admit(
        canonical.CELLS, raw_cells, _canonical(raw_cells, canonical.CELLS), pd.Series(dtype=str),
        validator, as_of,
    )  # fmt: skip
    run.write(canonical.CELLS, {"cells": cells})
    inventory = cells.rows.to_pandas()
    known_cells = inventory["cell_id"].tolist()
    zones = dict(zip(inventory["cell_id"], inventory["timezone"], strict=True))

    vendors = {
        "aurora": (world.AURORA_TELEMETRY, normalise_aurora),
        "zenith": (world.ZENITH_TELEMETRY, lambda raw: normalise_zenith(raw, zones)),
    }
    telemetry = {}
    for vendor, (spec, normalise) in vendors.items():
        raw = read_with_provenance(folder, spec)
        normalised, rejected = normalise(raw)
        telemetry[f"cell_telemetry ({vendor})"] = admit(
            canonical.CELL_TELEMETRY, raw, normalised, rejected, validator, as_of, known_cells,
            arrival="received_at",
        )  # fmt: skip
        del raw, normalised
    run.write(canonical.CELL_TELEMETRY, telemetry)
    merged = pa.concat_tables([a.rows for a in telemetry.values()])
    if (stale := _freshness(merged, "ts", as_of)) is not None:
        run.warnings.append(f"cell_telemetry: {stale}")

    for name, (spec, table) in TABLES.items():
        raw = read_with_provenance(folder, spec)
        admitted = admit(
            table, raw, _canonical(raw, table), pd.Series(dtype=str), validator, as_of, known_cells
        )
        run.write(table, {name: admitted})

    report = IngestReport(source=SOURCE, tables=run.reports, warnings=run.warnings)
    run.store.write_report(report)
    return report
