"""Upgrade offers on a simulated world: who accepts one, and the MRR it adds (ground truth).

An upgrade offer moves a customer to the next plan of the segment (none from the top plan);
accepted, it adds the MRR of the price step: MRR × (next list price / list price − 1). The
chance of accepting on a day rises with the customer's data use against the plan's usual
(near the plan's limit), with a usage spike (the last 7 days against the last 30), with the
SMB and enterprise segments, and with a latent appetite; it falls with price sensitivity.
Who accepts an offer made on a day is a uniform draw per customer and day below that chance,
from a random stream of its own: the world's files do not change with it, and the same seed
gives the same answers. An upgrade changes no churn in the world.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from closedloop.world import catalog
from closedloop.world.churn import rolling_sum
from closedloop.world.simulate import Truth
from closedloop.world.treatment import observed

STREAM = 18  # the upgrade truth's random stream, spawned apart from the world's
BASE_LOG_ODDS = -3.5
SEGMENT_LOG_ODDS = np.array([0.0, 0.5, 0.3])
USAGE_SIGNALS = ("data_30d_vs_plan", "data_7d_vs_30d", "upgrade_mrr_gain")


def _next_plan() -> np.ndarray:
    """For each plan, the next plan up in its segment (by list price), -1 for the top one."""
    up = np.full(len(catalog.PLANS), -1)
    for i, plan in enumerate(catalog.PLANS):
        dearer = [
            (other.list_price, j)
            for j, other in enumerate(catalog.PLANS)
            if other.segment == plan.segment and other.list_price > plan.list_price
        ]
        if dearer:
            up[i] = min(dearer)[1]
    return up


NEXT_PLAN = _next_plan()


def mrr_gain(truth: Truth) -> np.ndarray:
    """The MRR an accepted upgrade adds for each customer (0 on the top plan)."""
    c = truth.customers
    step = np.array([p.list_price for p in catalog.PLANS])
    up = NEXT_PLAN[c.plan]
    ratio = np.where(up >= 0, step[np.maximum(up, 0)] / step[c.plan], 1.0)
    return np.round(c.mrr * (ratio - 1), 2)


def usage_signals(truth: Truth, day: int) -> pd.DataFrame:
    """What the operator's usage records say on ``day`` (up to the end of ``day - 1``): data
    over 30 days against the median of the customer's plan, the last 7 days' daily data against
    the last 30's, and the MRR an upgrade would add."""
    if not 1 <= day < truth.config.days:
        raise ValueError(f"day {day} lies outside 1..{truth.config.days - 1}")
    data, last = truth.usage.data_mb.astype(np.float64), day - 1
    total = rolling_sum(data, 30)[:, last]
    week = rolling_sum(data, 7)[:, last] / min(day, 7)
    month = total / min(day, 30)
    plan = truth.customers.plan
    usual = np.ones(len(catalog.PLANS))
    for p in np.unique(plan):
        usual[p] = max(float(np.median(total[plan == p])), 1e-6)
    return pd.DataFrame(
        {
            "data_30d_vs_plan": total / usual[plan],
            "data_7d_vs_30d": week / np.maximum(month, 1e-6),
            "upgrade_mrr_gain": mrr_gain(truth),
        }
    )


def upsell_observed(truth: Truth, day: int) -> pd.DataFrame:
    """The operator's view of each customer on ``day``: the churn models' features and the
    usage signals."""
    return pd.concat([observed(truth, day), usage_signals(truth, day)], axis=1)


@dataclass(frozen=True)
class UpgradeTruth:
    """Simulator-only: each customer's latent appetite for an upgrade."""

    appetite: np.ndarray


def upgrade_truth(truth: Truth) -> UpgradeTruth:
    rng = np.random.default_rng([truth.config.seed, STREAM])
    return UpgradeTruth(appetite=rng.normal(0.0, 0.7, len(truth.customers)))


def accept_chance(truth: Truth, day: int, latent: UpgradeTruth | None = None) -> np.ndarray:
    """Each customer's true chance of accepting an upgrade offered on ``day`` (0 on the top
    plan)."""
    latent = latent or upgrade_truth(truth)
    usage, c = usage_signals(truth, day), truth.customers
    log_odds = (
        BASE_LOG_ODDS
        + 1.5 * np.log(np.clip(usage["data_30d_vs_plan"].to_numpy(), 0.05, 20))
        + 2.0 * np.clip(usage["data_7d_vs_30d"].to_numpy() - 1, 0, 2)
        + SEGMENT_LOG_ODDS[c.segment]
        - 1.0 * c.price_sensitivity
        + latent.appetite
    )
    chance = 1 / (1 + np.exp(-log_odds))
    return np.where(NEXT_PLAN[c.plan] >= 0, chance, 0.0)


def accepts(truth: Truth, day: int, latent: UpgradeTruth | None = None) -> np.ndarray:
    """Who would accept an upgrade offered on ``day``: a uniform draw per customer and day
    below the chance."""
    draw = np.random.default_rng([truth.config.seed, STREAM, day]).random(len(truth.customers))
    return draw < accept_chance(truth, day, latent)


def can_upgrade(truth: Truth, day: int) -> np.ndarray:
    """Customers still there on ``day``, contactable, with a plan above theirs."""
    c = truth.customers
    here = truth.churn.active(truth.config.days)[:, day]
    return here & ~c.do_not_contact & (NEXT_PLAN[c.plan] >= 0)


@dataclass(frozen=True)
class OfferLog:
    """Logged upgrade offers: the features on the offer's day and whether it was accepted."""

    features: pd.DataFrame
    customer: np.ndarray
    accepted: np.ndarray
    day: int


def offer_log(truth: Truth, day: int, share: float, seed: int) -> OfferLog:
    """Upgrade offers made on ``day`` to a random ``share`` of the customers who can upgrade,
    with the world's answers."""
    if not 0 < share <= 1:
        raise ValueError(f"share must lie in (0, 1], got {share}")
    who = np.flatnonzero(can_upgrade(truth, day))
    who = who[np.random.default_rng([seed, day]).random(len(who)) < share]
    return OfferLog(
        features=upsell_observed(truth, day).iloc[who].reset_index(drop=True),
        customer=who,
        accepted=accepts(truth, day)[who],
        day=day,
    )
