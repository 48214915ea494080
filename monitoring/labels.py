"""Delayed labels joined back to scored rows, once they have matured.

A row scored at t is labelled by what happened in [t, t + horizon), the same rule training uses;
its label is known (matured) only when t + horizon is at or before ``as_of``. Fault rows scored
inside an ongoing fault are left out, as in training.
"""

from __future__ import annotations

import pandas as pd


def _utc(series: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(series)
    stamps = stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps.dt.tz_convert("UTC")
    return stamps.astype("datetime64[ns, UTC]")


def matured(scored_at: pd.Series, horizon: pd.Timedelta, as_of: pd.Timestamp) -> pd.Series:
    """Which rows' labels are known at ``as_of``."""
    return _utc(scored_at) + horizon <= as_of


def churn_labels(
    rows: pd.DataFrame, churn: pd.DataFrame, horizon: pd.Timedelta, as_of: pd.Timestamp
) -> pd.DataFrame:
    """Matured rows of ``entity_id, scored_at, ...`` with ``label``: the customer left in time."""
    rows = rows[matured(rows["scored_at"], horizon, as_of)]
    leaving = churn.loc[churn["churned"].astype(bool), ["customer_id", "churn_date"]]
    left_at = _utc(leaving["churn_date"]).set_axis(leaving["customer_id"])
    when = rows["entity_id"].map(left_at)
    t = _utc(rows["scored_at"])
    label = (when >= t) & (when < t + horizon)
    return rows.assign(label=label.astype(int).to_numpy())


def fault_labels(
    rows: pd.DataFrame, faults: pd.DataFrame, horizon: pd.Timedelta, as_of: pd.Timestamp
) -> pd.DataFrame:
    """Matured rows with ``label``: a new fault starts on the cell within the horizon."""
    rows = rows[matured(rows["scored_at"], horizon, as_of)].copy()
    rows["_t"] = _utc(rows["scored_at"])
    rows = rows.sort_values("_t", kind="stable")
    events = faults.assign(start_at=_utc(faults["start_at"]), end_at=_utc(faults["end_at"]))
    events = events.rename(columns={"cell_id": "entity_id"}).sort_values("start_at")
    upcoming = pd.merge_asof(
        rows, events[["entity_id", "start_at"]].rename(columns={"start_at": "next_start"}),
        left_on="_t", right_on="next_start", by="entity_id", direction="forward",
    )  # fmt: skip
    current = pd.merge_asof(
        rows[["entity_id", "_t"]],
        events[["entity_id", "start_at", "end_at"]].rename(columns={"start_at": "last_start"}),
        left_on="_t", right_on="last_start", by="entity_id", direction="backward",
    )  # fmt: skip
    ongoing = (current["end_at"] > current["_t"]).fillna(False).to_numpy()
    label = upcoming["next_start"].notna() & (upcoming["next_start"] < upcoming["_t"] + horizon)
    out = upcoming.assign(label=label.astype(int)).drop(columns=["_t", "next_start"])
    return out[~ongoing].reset_index(drop=True)
