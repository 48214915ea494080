"""What actions did: customers treated against the policy's held-out control group, each
followed for a horizon in the churn outcomes the offline store holds (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

Z95 = 1.959964


@dataclass(frozen=True)
class Effect:
    """The realised effect of one action type: the fall in the share of customers leaving
    within the horizon, held out against treated, with its 95 % interval (Agresti–Caffo)."""

    action: str
    treated: int
    treated_left: int
    held_out: int
    held_out_left: int
    effect: float | None  # None without both groups
    low: float | None
    high: float | None


def _interval(left_t: int, n_t: int, left_c: int, n_c: int) -> tuple[float, float, float]:
    """The difference of two proportions (control − treated) and its Agresti–Caffo interval:
    one leaver and one stayer added to each group, which keeps small groups honest."""
    effect = left_c / n_c - left_t / n_t
    p_t, p_c = (left_t + 1) / (n_t + 2), (left_c + 1) / (n_c + 2)
    centre = p_c - p_t
    se = math.sqrt(p_t * (1 - p_t) / (n_t + 2) + p_c * (1 - p_c) / (n_c + 2))
    return effect, centre - Z95 * se, centre + Z95 * se


def followed(
    decisions: pd.DataFrame, labels: pd.DataFrame, horizon_days: int, as_of: date
) -> pd.DataFrame:
    """Each decision (``action``, ``customer_id``, ``status``, ``decided_at``) whose horizon
    has passed by ``as_of``, with ``left``: the customer left within ``horizon_days`` of it
    (``labels``: ``customer_id``, ``churned``, ``churn_date``)."""
    if decisions.empty:
        return decisions.assign(left=pd.Series(dtype=bool))
    day = pd.to_datetime(decisions["decided_at"], utc=True, format="ISO8601").dt.date
    matured = decisions[day + timedelta(days=horizon_days) <= as_of].copy()
    matured["day"] = day[matured.index]
    churn = labels[labels["churned"]].drop_duplicates("customer_id").set_index("customer_id")
    left_on = matured["customer_id"].map(churn["churn_date"])
    gone = pd.to_datetime(left_on).dt.date
    matured["left"] = [
        bool(g is not None and not pd.isna(g) and d <= g < d + timedelta(days=horizon_days))
        for g, d in zip(gone, matured["day"], strict=True)
    ]
    return matured.drop(columns="day")


def realised_effects(outcomes: pd.DataFrame, treated: str, held_out: str) -> list[Effect]:
    """Per action type, customers ``treated`` (a status) against those ``held_out``."""
    effects = []
    for action, rows in outcomes.groupby("action", sort=True):
        t = rows[rows["status"] == treated]
        c = rows[rows["status"] == held_out]
        n_t, n_c, left_t, left_c = len(t), len(c), int(t["left"].sum()), int(c["left"].sum())
        effect = low = high = None
        if n_t and n_c:
            effect, low, high = _interval(left_t, n_t, left_c, n_c)
        effects.append(Effect(str(action), n_t, left_t, n_c, left_c, effect, low, high))
    return effects
