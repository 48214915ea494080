"""Treatments on a simulated world: the same seed, with actions' causal hazard ratios on top.

A treatment multiplies one customer's daily churn hazard by that customer's ratio for the
action (the ``hr_*`` columns of ``truth/customer_traits.parquet``) for ``EFFECT_DAYS`` from its
day. The world's calibration and each customer's leaving threshold stay those of the untreated
world, so a re-simulation differs from it only by what was done: the counterfactual is exact.
Also here: what an operator could observe about each customer on a day (no latent trait), and a
randomised treatment log to learn uplift from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from closedloop.world import catalog
from closedloop.world.churn import EFFECT_DAYS, ActionEffects, Churn, churn_at, rolling_sum
from closedloop.world.simulate import Truth

KIND = {name: index for index, name in enumerate(catalog.ACTIONS)}


@dataclass(frozen=True)
class Treatments:
    """Actions applied to customers: parallel arrays of customer index, day and action kind."""

    customer: np.ndarray
    day: np.ndarray
    kind: np.ndarray  # index into catalog.ACTIONS

    @classmethod
    def of(cls, customer, day, kind) -> Treatments:
        customer = np.asarray(customer, dtype=np.int64)
        return cls(
            customer=customer,
            day=np.broadcast_to(np.asarray(day, dtype=np.int64), customer.shape).copy(),
            kind=np.broadcast_to(np.asarray(kind, dtype=np.int64), customer.shape).copy(),
        )

    @classmethod
    def none(cls) -> Treatments:
        return cls.of(np.empty(0, dtype=np.int64), 0, 0)

    def __len__(self) -> int:
        return len(self.customer)


def ratio(effects: ActionEffects, kind: int) -> np.ndarray:
    """Each customer's hazard ratio for one action kind."""
    return getattr(effects, catalog.ACTIONS[kind])


def treated_hazard(
    hazard: np.ndarray, effects: ActionEffects, treatments: Treatments
) -> np.ndarray:
    """The daily hazard with every treatment applied; an action repeated while it still works
    does not compound (as the world's own goodwill credits)."""
    if not len(treatments):
        return hazard
    customers, days = hazard.shape
    multiplier = np.ones_like(hazard)
    for kind in np.unique(treatments.kind):
        chosen = treatments.kind == kind
        who, day = treatments.customer[chosen], treatments.day[chosen]
        if ((day < 0) | (day >= days)).any() or ((who < 0) | (who >= customers)).any():
            raise ValueError("a treatment lies outside the world's customers or days")
        steps = np.zeros((customers, days + 1), dtype=np.int32)
        np.add.at(steps, (who, day), 1)
        np.add.at(steps, (who, np.minimum(day + EFFECT_DAYS, days)), -1)
        covered = np.cumsum(steps, axis=1)[:, :days] > 0
        multiplier *= np.where(covered, ratio(effects, int(kind))[:, None], 1.0)
    return hazard * multiplier


def resimulate(truth: Truth, treatments: Treatments) -> Churn:
    """Who leaves, and when, had these treatments been applied to the world."""
    return churn_at(treated_hazard(truth.hazard, truth.effects, treatments), truth.threshold)


def left_within(churn: Churn, start: int, end: int) -> np.ndarray:
    """True for customers who leave on a day in ``[start, end]``."""
    return churn.churned & (churn.day >= start) & (churn.day <= end)


OBSERVED = (
    "segment",
    "sla_tier",
    "plan",
    "device",
    "region",
    "contract",
    "mrr",
    "price_gap",
    "tenure_months",
    "days_to_contract_end",
    "outage_minutes_30d",
    "degraded_minutes_30d",
    "latency_ratio_7d",
    "failed_sessions_7d",
    "tickets_30d",
    "complaints_30d",
    "credits_30d",
)


def observed(truth: Truth, day: int) -> pd.DataFrame:
    """What the operator knows about each customer at the end of ``day - 1``: inventory and the
    trailing experience, contacts and credits. No latent trait, no market truth."""
    if not 1 <= day < truth.config.days:
        raise ValueError(f"day {day} lies outside 1..{truth.config.days - 1}")
    c, x, last = truth.customers, truth.experience, day - 1
    shape = truth.hazard.shape

    def trailing(values: np.ndarray, window: int) -> np.ndarray:
        return rolling_sum(values, window)[:, last]

    credited = np.zeros(shape)
    np.add.at(credited, (truth.credits.customer, truth.credits.day), truth.credits.amount)
    latency_7d = trailing(x.latency_p95_ms, 7) / min(day, 7)
    usual = np.median(x.latency_p95_ms[:, :day], axis=1)
    return pd.DataFrame(
        {
            "segment": c.segment,
            "sla_tier": c.sla,
            "plan": c.plan,
            "device": c.device,
            "region": c.region,
            "contract": c.contract,
            "mrr": c.mrr,
            "price_gap": c.mrr / c.list_price - 1,
            "tenure_months": (c.tenure_days + day) / 30.4,
            "days_to_contract_end": np.where(
                c.contract_end_day >= day, c.contract_end_day - day, -1
            ),
            "outage_minutes_30d": trailing(x.outage_minutes, 30),
            "degraded_minutes_30d": trailing(x.degraded_minutes, 30),
            "latency_ratio_7d": latency_7d / np.maximum(usual, 1e-6),
            "failed_sessions_7d": trailing(x.failed_sessions.astype(np.float64), 7),
            "tickets_30d": trailing(truth.tickets.per_day(shape), 30),
            "complaints_30d": trailing(
                truth.tickets.per_day(shape, truth.tickets.is_complaint), 30
            ),
            "credits_30d": trailing(credited, 30),
        },
        columns=list(OBSERVED),
    )


@dataclass(frozen=True)
class TreatmentLog:
    """A randomised trial on the world: features at its day, the arm, and who left after."""

    features: pd.DataFrame
    customer: np.ndarray  # customer index of each row
    arm: np.ndarray  # -1 control, else the action kind
    left: np.ndarray  # left within ``horizon`` days of the trial's day
    day: int
    horizon: int


def randomised_log(
    truth: Truth, day: int, horizon: int, kinds: tuple[int, ...], holdout: float, seed: int
) -> TreatmentLog:
    """Every customer still there on ``day`` is held out (control) with probability
    ``holdout``, else given one of ``kinds`` at random; outcomes are re-simulated exactly."""
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must lie in (0, 1), got {holdout}")
    here = truth.churn.active(truth.config.days)[:, day]
    who = np.flatnonzero(here)
    rng = np.random.default_rng([seed, day])
    control = rng.random(len(who)) < holdout
    arm = np.where(control, -1, np.asarray(kinds)[rng.integers(0, len(kinds), len(who))])
    treated = ~control
    churn = resimulate(truth, Treatments.of(who[treated], day, arm[treated]))
    end = min(day + horizon, truth.config.days) - 1
    return TreatmentLog(
        features=observed(truth, day).iloc[who].reset_index(drop=True),
        customer=who,
        arm=arm,
        left=left_within(churn, day, end)[who],
        day=day,
        horizon=horizon,
    )
