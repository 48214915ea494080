"""The feature stage's edges: build feature tables from the offline store, apply, materialise."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from closedloop.home import Home
from closedloop.settings import Settings
from features.build import CustomerSources, cell_hourly, customer_daily
from features.offline import OfflineStore
from features.online import save_layouts
from features.repo import CELL_HEALTH, FeaturePaths, FeatureRepo, feature_repo
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
    cells = cell_hourly(offline.read("cell_telemetry"), offline.read("cells"))
    if cells.empty:
        cells = cells.reindex(columns=["cell_id", "event_timestamp", *CELL_HEALTH])
    _write(cells, paths.cell_hourly)
    return Built(len(customers), len(cells), paths)


def repository(settings: Settings) -> FeatureRepo:
    return feature_repo(FeaturePaths.under(settings.paths))


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
