"""Labelled snapshots: which entity, at which instant, and what happened within the horizon.

A snapshot at instant t sees only features stamped at or before t (Feast joins them) and is
labelled by events in [t, t + horizon). Snapshots whose horizon runs past the end of the data
are left out: their label is not known yet.
"""

from __future__ import annotations

import pandas as pd


def snapshot_instants(stamps: pd.Series, every: pd.Timedelta) -> pd.Series:
    """Which feature stamps fall on the snapshot grid (every ``every`` from the first stamp)."""
    first = stamps.min()
    return ((stamps - first) % every) == pd.Timedelta(0)


def _utc(series: pd.Series) -> pd.Series:
    """Any timestamps or dates as UTC instants in nanoseconds (so they join alike)."""
    stamps = pd.to_datetime(series)
    stamps = stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps.dt.tz_convert("UTC")
    return stamps.astype("datetime64[ns, UTC]")


def churn_snapshots(
    feature_keys: pd.DataFrame,
    churn_labels: pd.DataFrame,
    horizon: pd.Timedelta,
    every: pd.Timedelta,
) -> pd.DataFrame:
    """``customer_id, event_timestamp, label``: the customer leaves within the horizon."""
    stamps = _utc(feature_keys["event_timestamp"])
    keys = feature_keys.assign(event_timestamp=stamps)
    end = stamps.max()
    on_grid = snapshot_instants(stamps, every) & (stamps + horizon <= end)
    snapshots = keys.loc[on_grid, ["customer_id", "event_timestamp"]]
    leaving = churn_labels.loc[churn_labels["churned"], ["customer_id", "churn_date"]]
    left_at = _utc(leaving["churn_date"]).set_axis(leaving["customer_id"])
    when = snapshots["customer_id"].map(left_at)
    t = snapshots["event_timestamp"]
    label = (when >= t) & (when < t + horizon)
    return snapshots.assign(label=label.astype(int)).reset_index(drop=True)


def fault_snapshots(
    feature_keys: pd.DataFrame, faults: pd.DataFrame, horizon: pd.Timedelta, every: pd.Timedelta
) -> pd.DataFrame:
    """``cell_id, event_timestamp, label``: a new fault starts on the cell within the horizon.

    Instants inside an ongoing fault are left out: the model is for faults still to come.
    """
    stamps = _utc(feature_keys["event_timestamp"])
    keys = feature_keys.assign(event_timestamp=stamps)
    end = stamps.max()
    on_grid = snapshot_instants(stamps, every) & (stamps + horizon <= end)
    snapshots = keys.loc[on_grid, ["cell_id", "event_timestamp"]].sort_values("event_timestamp")
    events = faults.assign(start_at=_utc(faults["start_at"]), end_at=_utc(faults["end_at"]))
    events = events.sort_values("start_at")[["cell_id", "start_at", "end_at"]]
    upcoming = pd.merge_asof(
        snapshots, events.rename(columns={"start_at": "next_start"})[["cell_id", "next_start"]],
        left_on="event_timestamp", right_on="next_start", by="cell_id", direction="forward",
    )  # fmt: skip
    current = pd.merge_asof(
        snapshots, events.rename(columns={"start_at": "last_start", "end_at": "last_end"}),
        left_on="event_timestamp", right_on="last_start", by="cell_id", direction="backward",
    )  # fmt: skip
    ongoing = (current["last_end"] > current["event_timestamp"]).fillna(False).to_numpy()
    t = upcoming["event_timestamp"]
    label = upcoming["next_start"].notna() & (upcoming["next_start"] < t + horizon)
    out = upcoming[["cell_id", "event_timestamp"]].assign(label=label.astype(int))
    return out[~ongoing].sort_values(["event_timestamp", "cell_id"]).reset_index(drop=True)
