"""The label rules, for training snapshots and for monitoring's scored rows alike.

A row of an entity at instant t sees only features stamped at or before t and is labelled by
the events in [t, t + horizon): the customer leaves (churn), or a new fault starts on the cell
(fault; instants inside an ongoing fault are left out: the model is for faults still to come).

Training labels the snapshots on a grid whose horizon ends inside the data; monitoring labels
the rows it scored once they have matured (t + horizon at or before ``as_of``). Both go
through the same rule below, chosen by the model spec's :class:`~closedloop.models.LabelKind`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from closedloop.models import LabelKind


def _utc(series: pd.Series) -> pd.Series:
    """Any timestamps or dates as UTC instants in nanoseconds (so they join alike)."""
    stamps = pd.to_datetime(series)
    stamps = stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps.dt.tz_convert("UTC")
    return stamps.astype("datetime64[ns, UTC]")


# --- the rules ------------------------------------------------------------------------------


def leaves_within(
    customers: pd.Series, instants: pd.Series, churn: pd.DataFrame, horizon: pd.Timedelta
) -> np.ndarray:
    """1 where the customer leaves in [t, t + horizon), else 0 (aligned with ``customers``)."""
    leaving = churn.loc[churn["churned"].astype(bool), ["customer_id", "churn_date"]]
    left_at = _utc(leaving["churn_date"]).set_axis(leaving["customer_id"])
    when = customers.map(left_at)
    t = _utc(instants)
    return ((when >= t) & (when < t + horizon)).astype(int).to_numpy()


def fault_starts_within(
    cells: pd.Series, instants: pd.Series, faults: pd.DataFrame, horizon: pd.Timedelta
) -> tuple[np.ndarray, np.ndarray]:
    """For rows in time order: 1 where a new fault starts on the cell in [t, t + horizon), and
    whether t lies inside an ongoing fault (such rows get no label)."""
    rows = pd.DataFrame({"cell_id": cells.to_numpy(), "t": _utc(instants).reset_index(drop=True)})
    events = faults.assign(start_at=_utc(faults["start_at"]), end_at=_utc(faults["end_at"]))
    events = events.sort_values("start_at")[["cell_id", "start_at", "end_at"]]
    upcoming = pd.merge_asof(
        rows, events.rename(columns={"start_at": "next_start"})[["cell_id", "next_start"]],
        left_on="t", right_on="next_start", by="cell_id", direction="forward",
    )  # fmt: skip
    current = pd.merge_asof(
        rows, events.rename(columns={"start_at": "last_start"}),
        left_on="t", right_on="last_start", by="cell_id", direction="backward",
    )  # fmt: skip
    ongoing = (current["end_at"] > current["t"]).fillna(False).to_numpy(dtype=bool)
    label = upcoming["next_start"].notna() & (upcoming["next_start"] < upcoming["t"] + horizon)
    return label.astype(int).to_numpy(), ongoing


# --- training: snapshots on the grid --------------------------------------------------------


def snapshot_instants(stamps: pd.Series, every: pd.Timedelta) -> pd.Series:
    """Which feature stamps fall on the snapshot grid (every ``every`` from the first stamp)."""
    first = stamps.min()
    return ((stamps - first) % every) == pd.Timedelta(0)


def _grid(
    feature_keys: pd.DataFrame, key: str, horizon: pd.Timedelta, every: pd.Timedelta
) -> pd.DataFrame:
    """The keys on the snapshot grid whose horizon ends inside the data, stamped in UTC."""
    stamps = _utc(feature_keys["event_timestamp"])
    keys = feature_keys.assign(event_timestamp=stamps)
    on_grid = snapshot_instants(stamps, every) & (stamps + horizon <= stamps.max())
    return keys.loc[on_grid, [key, "event_timestamp"]]


def churn_snapshots(
    feature_keys: pd.DataFrame,
    churn_labels: pd.DataFrame,
    horizon: pd.Timedelta,
    every: pd.Timedelta,
) -> pd.DataFrame:
    """``customer_id, event_timestamp, label``: the customer leaves within the horizon."""
    snapshots = _grid(feature_keys, "customer_id", horizon, every)
    label = leaves_within(
        snapshots["customer_id"], snapshots["event_timestamp"], churn_labels, horizon
    )
    return snapshots.assign(label=label).reset_index(drop=True)


def fault_snapshots(
    feature_keys: pd.DataFrame, faults: pd.DataFrame, horizon: pd.Timedelta, every: pd.Timedelta
) -> pd.DataFrame:
    """``cell_id, event_timestamp, label``: a new fault starts on the cell within the horizon;
    instants inside an ongoing fault are left out."""
    snapshots = _grid(feature_keys, "cell_id", horizon, every)
    snapshots = snapshots.sort_values("event_timestamp", kind="stable").reset_index(drop=True)
    label, ongoing = fault_starts_within(
        snapshots["cell_id"], snapshots["event_timestamp"], faults, horizon
    )
    out = snapshots.assign(label=label)[~ongoing]
    return out.sort_values(["event_timestamp", "cell_id"]).reset_index(drop=True)


SNAPSHOTS = {LabelKind.LEAVES: churn_snapshots, LabelKind.FAULT_STARTS: fault_snapshots}


# --- monitoring: scored rows once their labels are known ------------------------------------


def matured(scored_at: pd.Series, horizon: pd.Timedelta, as_of: pd.Timestamp) -> pd.Series:
    """Which rows' labels are known at ``as_of``."""
    return _utc(scored_at) + horizon <= as_of


def churn_labels(
    rows: pd.DataFrame, churn: pd.DataFrame, horizon: pd.Timedelta, as_of: pd.Timestamp
) -> pd.DataFrame:
    """Matured rows of ``entity_id, scored_at, ...`` with ``label``: the customer left in time."""
    rows = rows[matured(rows["scored_at"], horizon, as_of)]
    return rows.assign(label=leaves_within(rows["entity_id"], rows["scored_at"], churn, horizon))


def fault_labels(
    rows: pd.DataFrame, faults: pd.DataFrame, horizon: pd.Timedelta, as_of: pd.Timestamp
) -> pd.DataFrame:
    """Matured rows with ``label``: a new fault starts on the cell within the horizon; rows
    scored inside an ongoing fault are left out. Rows come back in time order."""
    rows = rows[matured(rows["scored_at"], horizon, as_of)]
    rows = rows.sort_values("scored_at", kind="stable", key=_utc).reset_index(drop=True)
    label, ongoing = fault_starts_within(rows["entity_id"], rows["scored_at"], faults, horizon)
    return rows.assign(label=label)[~ongoing].reset_index(drop=True)


MATURED = {LabelKind.LEAVES: churn_labels, LabelKind.FAULT_STARTS: fault_labels}


def entity_classes(events: pd.DataFrame, key: str, column: str, classes: list[str]) -> pd.Series:
    """Each entity's class in a label table as its index in ``classes`` (float: NaN for an
    entity without a class), by entity key."""
    known = events.drop_duplicates(key).set_index(key)[column]
    return known.map({name: index for index, name in enumerate(classes)})


def class_labels(
    rows: pd.DataFrame, events: pd.DataFrame, key: str, column: str, classes: list[str]
) -> pd.DataFrame:
    """Rows of ``entity_id, ...`` with ``label``: the index of their entity's class (snapshot
    data records an entity's class outright, so it is known once imported); rows whose entity
    has no class are left out."""
    label = rows["entity_id"].map(entity_classes(events, key, column, classes))
    return rows.assign(label=label)[label.notna()].astype({"label": int})
