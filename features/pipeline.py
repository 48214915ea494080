"""The feature stage's edges: build feature tables from the offline store, apply, materialise."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from closedloop.home import Home
from closedloop.settings import Settings
from features.build import (
    CustomerSources,
    Span,
    cell_hourly,
    customer_daily,
    day_span,
    hour_span,
)
from features.offline import OfflineStore
from features.online import save_layouts
from features.parts import KeyRange, PartedFiles, PartWriter, split_at
from features.repo import CELL_HEALTH, FeaturePaths, FeatureRepo, attribute_sets, feature_repo
from features.store import (
    Materialised,
    bulk_materialize,
    open_store,
    service_layout,
    sqlite_path,
)


@dataclass(frozen=True)
class Built:
    customer_rows: int
    cell_rows: int
    paths: FeaturePaths
    orphans: dict[str, int]  # rows per table for entities not in the inventory, left out


STEPS_AT_ONCE = 400_000  # entity-days or entity-hours windowed at a time: bounds the build's memory
CUSTOMER_TABLES = ("customers", "experience", "usage", "tickets", "invoices", "credits")


def _write(frame: pd.DataFrame, path: Path) -> None:
    """A feature table as Parquet, stamped in microseconds (what every offline engine reads)."""
    writer = _FeatureWriter(path)
    writer.write(frame)
    writer.close()


class _FeatureWriter:
    """A feature table written a group of entities at a time, its types fixed by the first
    group (a column all null in it is text), stamped in microseconds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self.columns: list[str] = []
        self.first_stamp: pd.Timestamp | None = None
        self._writer: PartWriter | None = None

    def write(self, frame: pd.DataFrame) -> None:
        stamps = frame["event_timestamp"].astype("datetime64[us, UTC]")
        frame = frame.assign(event_timestamp=stamps)
        if self._writer is None:
            schema = pa.Schema.from_pandas(frame, preserve_index=False)
            for i, column in enumerate(schema):
                if pa.types.is_null(column.type):
                    schema = schema.set(i, column.with_type(pa.string()))
            self._writer = PartWriter(self.path, schema)
            self.columns = list(frame.columns)
        table = pa.Table.from_pandas(frame, schema=self._writer.schema, preserve_index=False)
        self._writer.write(table)
        self.rows += len(frame)
        if len(frame) and (self.first_stamp is None or stamps.min() < self.first_stamp):
            self.first_stamp = stamps.min()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _groups(ids: np.ndarray, size: int) -> list[KeyRange]:
    """Ranges of sorted ``ids`` of ``size`` ids each, together covering every key."""
    return split_at(ids[size::size].tolist())


def _orphans(frame: pd.DataFrame, key: str, known: pd.Index) -> int:
    return int((~frame[key].isin(known)).sum())


def _count(counts: dict[str, int], name: str, n: int) -> None:
    if n:
        counts[name] = counts.get(name, 0) + n


def _build_customers(
    offline: OfflineStore, path: Path, as_of: pd.Timestamp
) -> tuple[_FeatureWriter, dict[str, int]]:
    """Customer days, a group of customers at a time; rows of customers not in the inventory."""
    ids = _sorted_keys(offline, "customers", "customer_id")
    span = _span(offline, ("experience", "usage"), "date", day_span)
    size = max(1, STEPS_AT_ONCE // (span.steps if span else 1))
    writer, orphans = _FeatureWriter(path), {}
    for part in _groups(ids, size) if len(ids) else [KeyRange(None, None)]:
        sources = CustomerSources(
            *(offline.read_part(t, "customer_id", part) for t in CUSTOMER_TABLES)
        )
        known = pd.Index(sources.customers["customer_id"])
        for name in CUSTOMER_TABLES[1:]:
            _count(orphans, name, _orphans(getattr(sources, name), "customer_id", known))
        labels = offline.read_part("churn_labels", "customer_id", part, ["customer_id"])
        _count(orphans, "churn_labels", _orphans(labels, "customer_id", known))
        writer.write(customer_daily(sources, as_of, span))
        del sources
    writer.close()
    return writer, orphans


def _build_cells(offline: OfflineStore, path: Path) -> tuple[_FeatureWriter, dict[str, int]]:
    """Cell hours, a group of cells at a time; telemetry rows of cells not in the inventory."""
    inventory = offline.read("cells")
    ids = np.sort(inventory["cell_id"].unique())
    telemetry = offline.parted("cell_telemetry", "cell_id")
    span = _span(offline, ("cell_telemetry",), "ts", hour_span)
    interval = _median_interval(telemetry, pd.Index(ids)) if span else None
    size = max(1, STEPS_AT_ONCE // (span.steps if span else 1))
    writer, orphans = _FeatureWriter(path), {}
    for part in _groups(ids, size) if len(ids) and span else [KeyRange(None, None)]:
        cells = inventory[part.mask(pa.array(inventory["cell_id"])).to_numpy(False)]
        rows = offline.read_part("cell_telemetry", "cell_id", part)
        _count(orphans, "cell_telemetry", _orphans(rows, "cell_id", pd.Index(cells["cell_id"])))
        built = cell_hourly(rows, cells, span, interval)
        if built.empty and writer.rows == 0:
            built = built.reindex(columns=["cell_id", "event_timestamp", *CELL_HEALTH])
        writer.write(built)
    writer.close()
    return writer, orphans


def _sorted_keys(offline: OfflineStore, table: str, key: str) -> np.ndarray:
    """The distinct values of ``key`` in every source of ``table``, sorted."""
    files = offline.parted(table, key)
    if not len(files):
        return np.array([], dtype=object)
    keys = pa.concat_arrays([c.column(0).combine_chunks() for c in files.column_chunks([key])])
    return np.sort(pc.unique(keys.drop_null()).to_numpy(zero_copy_only=False))


def _span(offline: OfflineStore, tables: tuple[str, ...], column: str, span_of) -> Span | None:
    """The span of ``column`` over every row of ``tables`` (read a row group at a time)."""
    ends = []
    for table in tables:
        files = offline.parted(table, column)
        for chunk in files.column_chunks([column]) if len(files) else []:
            low, high = pc.min_max(chunk.column(0)).values()
            ends += [v for v in (low.as_py(), high.as_py()) if v is not None]
    return span_of(pd.Series(ends, dtype=object)) if ends else None


def _median_interval(telemetry: PartedFiles, cells: pd.Index) -> float | None:
    """The median reporting interval of the inventory's cells' telemetry (a missing one counts
    as 15 minutes), from the count of each distinct interval."""
    counted = []
    for chunk in telemetry.column_chunks(["cell_id", "interval_minutes"]):
        known = pc.is_in(chunk["cell_id"], pa.array(cells.to_numpy(), pa.string()))
        minutes = pc.fill_null(chunk.filter(known)["interval_minutes"], 15.0)
        counted.append(pc.value_counts(minutes).flatten())
    if not counted:
        return None
    values = pa.concat_arrays([c[0] for c in counted])
    counts = pa.concat_arrays([c[1] for c in counted])
    table = pa.table({"value": values, "n": counts}).group_by("value").aggregate([("n", "sum")])
    table = table.sort_by("value")
    values, counts = table["value"].to_numpy(), np.cumsum(table["n_sum"].to_numpy())
    if not len(counts):
        return None
    total = counts[-1]
    middle = np.searchsorted(counts, [(total - 1) // 2, total // 2], side="right")
    return float(values[middle].mean())


def build_features(home: Path, as_of: datetime) -> Built:
    """Compute the feature tables from every source in the offline store, a group of entities
    at a time (:data:`STEPS_AT_ONCE`), so memory is bounded by a group's, not a table's."""
    offline = OfflineStore(home)
    paths = FeaturePaths.under(Home.at(home))
    customers, orphans = _build_customers(offline, paths.customer_daily, pd.Timestamp(as_of))
    cells, cell_orphans = _build_cells(offline, paths.cell_hourly)
    shutil.rmtree(paths.attributes, ignore_errors=True)  # a source re-imported without them
    for table, built in (("customers", customers), ("cells", cells)):
        for source, frame in offline.read_attributes(table).items():
            rows = attribute_rows(frame, built.columns, built.first_stamp, source)
            _write(rows, paths.attributes / table / f"{source}.parquet")
    return Built(customers.rows, cells.rows, paths, orphans | cell_orphans)


def attribute_rows(
    attributes: pd.DataFrame, built: list[str], first_stamp: pd.Timestamp | None, source: str
) -> pd.DataFrame:
    """A source's entity attributes as a feature table: stamped at the first stamp of the
    entity's built-in features ``built`` (static facts, seen by every snapshot), booleans as
    0/1."""
    clashing = sorted(set(attributes.columns[1:]) & set(built))
    if clashing:
        raise ValueError(
            f"{source}: attributes {', '.join(clashing)} have the names of built-in features; "
            "rename them in the mapping"
        )
    stamp = pd.Timestamp(0, tz="UTC") if first_stamp is None else first_stamp
    out = attributes.copy()
    for column in out.columns[1:]:
        values = out[column].dropna()
        if len(values) and values.map(lambda v: isinstance(v, bool | np.bool_)).all():
            out[column] = out[column].map({True: 1.0, False: 0.0})
    out.insert(1, "event_timestamp", stamp)
    return out


def repository(settings: Settings) -> FeatureRepo:
    paths = FeaturePaths.under(settings.paths)
    return feature_repo(paths, attribute_sets(paths))


def apply_repository(settings: Settings) -> FeatureRepo:
    """Register the repository with Feast and write the services' online layout for serving."""
    repo = repository(settings)
    store = open_store(settings)
    store.apply(repo.objects)
    save_layouts(
        settings.paths.online_layout, [service_layout(store, s) for s in repo.services.values()]
    )
    return repo


def missing_step(settings: Settings) -> None:
    """Raises FileNotFoundError naming the command to run when the feature tables are not built
    or the repository is not applied yet."""
    paths = settings.paths
    if not (paths.customer_daily.exists() and paths.cell_hourly.exists()):
        raise FileNotFoundError(
            f"no feature tables in {paths.features}; run 'closedloop features build' first"
        )
    if not paths.online_layout.exists():
        raise FileNotFoundError(
            "the feature repository is not applied; run 'closedloop features apply' first"
        )


def materialize(
    settings: Settings, start: datetime, end: datetime, stock: bool
) -> list[Materialised]:
    """Load the online store with the newest rows in [start, end]: Feast's path or the bulk one.

    The bulk path writes SQLite; other online stores (Redis on the cluster profile) always take
    Feast's own path. Raises FileNotFoundError naming the step missing before it.
    """
    missing_step(settings)
    store = open_store(settings)
    if stock or sqlite_path(store) is None:
        store.materialize(start, end)
        return []
    return bulk_materialize(store, start, end)
