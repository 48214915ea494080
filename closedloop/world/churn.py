"""Churn with causal ground truth.

Each customer-day has a hazard driven by experienced outages and latency, price, contract end,
tenure, support contacts, competitor pressure and financial stress. Actions multiply that
hazard for 30 days by a known, customer-specific ratio; the operator's historical goodwill
credits already do so inside the world, so the recorded effects are the ones the world obeys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from closedloop.world import catalog
from closedloop.world.config import WorldConfig
from closedloop.world.experience import CellDays, Credits, Experience, Tickets
from closedloop.world.inventory import Customers, mrr_by_day

EFFECT_DAYS = 30
SEGMENT_BASE = np.array([0.0, -0.3, -0.8])
PRICE_RISE_WEIGHT = 4.0  # a rise on one's own bill weighs more than the price's level


def rolling_sum(values: np.ndarray, window: int) -> np.ndarray:
    """Sum over the trailing ``window`` days, today included, along axis 1."""
    total = np.cumsum(values, axis=1, dtype=np.float64)
    total[:, window:] -= total[:, :-window].copy()
    return total


def competitor_pressure(config: WorldConfig, rng: np.random.Generator) -> np.ndarray:
    """Daily competitor pressure per region, with one price war: (regions, days)."""
    base = np.array([r.competitor_pressure for r in catalog.REGIONS])[:, None]
    wander = np.cumsum(rng.normal(0, 0.01, (len(catalog.REGIONS), config.days)), axis=1)
    pressure = base + wander
    war_region = rng.integers(0, len(catalog.REGIONS))
    war_start = rng.integers(0, max(1, config.days - 20))
    pressure[war_region, war_start : war_start + 20] += 0.3
    return np.clip(pressure, 0, 1).astype(np.float32)


@dataclass(frozen=True)
class ActionEffects:
    """Hazard ratio each action applies to a customer's churn for 30 days (truth)."""

    credit: np.ndarray
    message: np.ndarray
    offer: np.ndarray
    priority_repair: np.ndarray


def action_effects(customers: Customers) -> ActionEffects:
    price, network = customers.price_sensitivity, customers.network_sensitivity
    month_to_month = customers.contract == 0
    return ActionEffects(
        credit=(1 - 0.45 * price).astype(np.float32),
        message=(1.05 - 0.4 * network).astype(np.float32),
        offer=np.where(month_to_month, 1 - 0.5 * price, 1 - 0.2 * price).astype(np.float32),
        priority_repair=(1 - 0.5 * network).astype(np.float32),
    )


@dataclass(frozen=True)
class Churn:
    churned: np.ndarray
    day: np.ndarray  # day of leaving; -1 when the customer stays
    hazard: np.ndarray  # (customers, days) daily probability-scale hazard

    def active(self, days: int) -> np.ndarray:
        """(customers, days): True while the customer is still a customer."""
        last = np.where(self.churned, self.day, days)
        return np.arange(days)[None, :] < last[:, None]


def hazard(
    config: WorldConfig,
    customers: Customers,
    experience: Experience,
    daily: CellDays,
    tickets: Tickets,
    credits: Credits,
    pressure: np.ndarray,
    effects: ActionEffects,
) -> np.ndarray:
    """Daily churn hazard, calibrated so its mean matches the configured churn rate."""
    shape = (len(customers), config.days)
    day = np.arange(config.days)[None, :]
    days_left = customers.contract_end_day[:, None] - day
    in_term = (customers.contract[:, None] > 0) & (days_left > 0)
    near_end = in_term & (days_left <= 30)
    two_year_term = in_term & (customers.contract[:, None] == 2)

    outage_30d = rolling_sum(experience.outage_minutes, 30)
    latency_7d = rolling_sum(experience.latency_p95_ms, 7) / np.minimum(day + 1, 7)
    usual_latency = (
        daily.typical_latency_p95_ms[customers.cell]
        * catalog.DEVICE_LATENCY_FACTOR[customers.device]
    )[:, None]
    tickets_30d = rolling_sum(tickets.per_day(shape), 30)
    complaints_30d = rolling_sum(tickets.per_day(shape, tickets.is_complaint), 30)
    tenure_months = (customers.tenure_days[:, None] + day) / 30.4
    network, price = customers.network_sensitivity[:, None], customers.price_sensitivity[:, None]
    price_gap = np.clip(customers.mrr / customers.list_price - 1, -0.5, 1)[:, None]
    mrr = mrr_by_day(config, customers)
    price_gap_now = np.clip(mrr / customers.list_price[:, None] - 1, -0.5, 1)
    price_rise = np.log(mrr / customers.mrr[:, None])  # 0 unless the price changed

    linear = (
        SEGMENT_BASE[customers.segment][:, None]
        + np.where(in_term, 0.0, 0.8)
        - 0.4 * two_year_term
        + 1.0 * near_end
        + (0.4 + 1.6 * network) * np.log1p(outage_30d / 60)
        + 1.0 * network * np.clip(latency_7d / usual_latency - 1, 0, 3)
        + 1.2 * price * price_gap
        + 1.5 * price * pressure[customers.region]
        - 0.25 * np.log1p(tenure_months)
        + 0.3 * np.minimum(tickets_30d, 4)
        + 0.5 * np.minimum(complaints_30d, 2)
        + 1.2 * customers.financial_stress[:, None]
    )
    relative = np.exp(linear)
    credited = np.zeros(shape, dtype=np.float64)
    np.add.at(credited, (credits.customer, credits.day), 1)
    under_credit = rolling_sum(credited, EFFECT_DAYS) > 0
    relative *= np.where(under_credit, effects.credit[:, None], 1.0)
    scale = config.monthly_churn_rate / 30 / relative.mean()
    # a price change moves the hazard after the calibration: the churn it causes is extra
    changed = 1.2 * price * (price_gap_now - price_gap) + PRICE_RISE_WEIGHT * price * price_rise
    return relative * np.exp(changed) * scale


def churn_at(hazard_daily: np.ndarray, threshold: np.ndarray) -> Churn:
    """Leave on the first day the cumulative hazard passes each customer's ``threshold``."""
    cumulative = np.cumsum(hazard_daily, axis=1)
    crossed = cumulative > threshold[:, None]
    churned = crossed[:, -1]
    return Churn(
        churned=churned,
        day=np.where(churned, crossed.argmax(axis=1), -1),
        hazard=hazard_daily,
    )
