"""The feature stage's edges: build feature tables from the offline store, apply, materialise."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from closedloop.home import Home
from closedloop.settings import Settings
from features.build import CustomerSources, cell_hourly, customer_daily
from features.offline import OfflineStore
from features.online import save_layouts
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


def _write(frame: pd.DataFrame, path: Path) -> None:
    """A feature table as Parquet, stamped in microseconds (what every offline engine reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    stamped = frame.assign(event_timestamp=frame["event_timestamp"].astype("datetime64[us, UTC]"))
    table = pa.Table.from_pandas(stamped, preserve_index=False)
    pq.write_table(table, partial, compression="zstd")
    partial.replace(path)


def build_features(home: Path, as_of: datetime) -> Built:
    """Compute the feature tables from every source in the offline store."""
    offline = OfflineStore(home)
    paths = FeaturePaths.under(Home.at(home))
    sources = CustomerSources(
        *(
            offline.read(t)
            for t in ("customers", "experience", "usage", "tickets", "invoices", "credits")
        )
    )
    customers = customer_daily(sources, pd.Timestamp(as_of))
    _write(customers, paths.customer_daily)
    telemetry, inventory = offline.read("cell_telemetry"), offline.read("cells")
    orphans = orphan_records(
        {t: getattr(sources, t) for t in ("experience", "usage", "tickets", "invoices", "credits")}
        | {"churn_labels": offline.read("churn_labels")},
        sources.customers,
        "customer_id",
    )
    orphans |= orphan_records({"cell_telemetry": telemetry}, inventory, "cell_id")
    cells = cell_hourly(telemetry, inventory)
    if cells.empty:
        cells = cells.reindex(columns=["cell_id", "event_timestamp", *CELL_HEALTH])
    _write(cells, paths.cell_hourly)
    shutil.rmtree(paths.attributes, ignore_errors=True)  # a source re-imported without them
    for table, built in (("customers", customers), ("cells", cells)):
        for source, frame in offline.read_attributes(table).items():
            rows = attribute_rows(frame, built, source)
            _write(rows, paths.attributes / table / f"{source}.parquet")
    return Built(len(customers), len(cells), paths, orphans)


def orphan_records(
    tables: dict[str, pd.DataFrame], entities: pd.DataFrame, key: str
) -> dict[str, int]:
    """Rows per table whose entity is not in the inventory (``entities``): no feature sees them."""
    known = set(entities[key])
    counts = {name: int((~frame[key].isin(known)).sum()) for name, frame in tables.items()}
    return {name: n for name, n in counts.items() if n}


def attribute_rows(attributes: pd.DataFrame, built: pd.DataFrame, source: str) -> pd.DataFrame:
    """A source's entity attributes as a feature table: stamped at the first stamp of the
    entity's built-in features (static facts, seen by every snapshot), booleans as 0/1."""
    clashing = sorted(set(attributes.columns[1:]) & set(built.columns))
    if clashing:
        raise ValueError(
            f"{source}: attributes {', '.join(clashing)} have the names of built-in features; "
            "rename them in the mapping"
        )
    stamp = built["event_timestamp"].min() if len(built) else pd.Timestamp(0, tz="UTC")
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
