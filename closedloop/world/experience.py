"""What customers live through each day: network experience, usage, support contacts, bills.

Arrays are shaped (customers, days). Experience follows the serving cell's true state;
support contacts and the operator's manual goodwill credits follow experience.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from closedloop.world import catalog
from closedloop.world.config import WorldConfig
from closedloop.world.inventory import Cells, Customers, mrr_by_day
from closedloop.world.network import Network

DEGRADED_LATENCY_FACTOR = 2.0  # latency above this many times the idle latency is degraded
DEGRADED_LOSS_PCT = 2.0
GOODWILL_OUTAGE_MINUTES = 120  # a day this bad may earn a manual credit


@dataclass(frozen=True)
class CellDays:
    """Daily aggregates of each cell's true state: (cells, days)."""

    outage_minutes: np.ndarray
    degraded_minutes: np.ndarray
    latency_p95_ms: np.ndarray

    @property
    def typical_latency_p95_ms(self) -> np.ndarray:
        """Each cell's median daily p95 latency: what its customers are used to."""
        return np.median(self.latency_p95_ms, axis=1)


def cell_days(network: Network, cells: Cells, per_day: int) -> CellDays:
    n_cells, t = network.shape
    days = t // per_day
    fully_down = network.down > 0.999
    degraded = ~fully_down & (
        (network.latency_ms > DEGRADED_LATENCY_FACTOR * cells.baseline_latency_ms[:, None])
        | (network.loss_pct > DEGRADED_LOSS_PCT)
    )
    latency = np.where(fully_down, cells.baseline_latency_ms[:, None], network.latency_ms)
    step = network.interval_minutes
    return CellDays(
        outage_minutes=(network.down.reshape(n_cells, days, per_day).sum(axis=2) * step),
        degraded_minutes=degraded.reshape(n_cells, days, per_day).sum(axis=2) * float(step),
        latency_p95_ms=np.percentile(latency.reshape(n_cells, days, per_day), 95, axis=2),
    )


@dataclass(frozen=True)
class Experience:
    outage_minutes: np.ndarray
    degraded_minutes: np.ndarray
    latency_p95_ms: np.ndarray
    failed_sessions: np.ndarray


def simulate_experience(
    customers: Customers, daily: CellDays, rng: np.random.Generator
) -> Experience:
    exposure = customers.exposure[:, None]
    outage = (daily.outage_minutes[customers.cell] * exposure).astype(np.float32)
    degraded = (daily.degraded_minutes[customers.cell] * exposure).astype(np.float32)
    latency = (
        daily.latency_p95_ms[customers.cell]
        * catalog.DEVICE_LATENCY_FACTOR[customers.device][:, None]
        * rng.lognormal(0, 0.08, outage.shape)
    ).astype(np.float32)
    failure_rate = (
        catalog.DEVICE_FAILURE_RATE[customers.device][:, None]
        + 0.8 * degraded / 60
        + 1.5 * outage / 60
    )
    return Experience(
        outage_minutes=outage,
        degraded_minutes=degraded,
        latency_p95_ms=latency,
        failed_sessions=rng.poisson(failure_rate).astype(np.int16),
    )


@dataclass(frozen=True)
class Usage:
    data_mb: np.ndarray
    voice_minutes: np.ndarray
    sms_count: np.ndarray


VOICE_MINUTES_BY_SEGMENT = np.array([25.0, 60.0, 120.0])
TALKING_DEVICES = np.array([True, True, True, False, False])


def simulate_usage(
    config: WorldConfig, customers: Customers, experience: Experience, rng: np.random.Generator
) -> Usage:
    shape = experience.outage_minutes.shape
    weekday = (np.datetime64(config.start, "D") + np.arange(config.days)).astype(int) % 7
    weekend = np.isin(weekday, (2, 3))  # 1970-01-01 was a Thursday: 2, 3 are Sat, Sun
    in_service = 1 - experience.outage_minutes / 1440
    level = rng.lognormal(0, 0.5, len(customers))[:, None]
    data = (
        catalog.DEVICE_DATA_MB[customers.device][:, None]
        * level
        * np.where(weekend, 1.15, 1.0)
        * rng.lognormal(0, 0.35, shape)
        * in_service
    )
    talks = TALKING_DEVICES[customers.device][:, None]
    voice = (
        VOICE_MINUTES_BY_SEGMENT[customers.segment][:, None]
        * level
        * rng.lognormal(0, 0.6, shape)
        * in_service
        * talks
    )
    return Usage(
        data_mb=data.astype(np.float32),
        voice_minutes=voice.astype(np.float32),
        sms_count=(rng.poisson(3.0, shape) * talks).astype(np.int16),
    )


TICKET_CATEGORIES: tuple[str, ...] = ("network", "billing", "device", "other")
BACKGROUND_CATEGORY_SHARE = np.array([0.25, 0.35, 0.2, 0.2])
CHANNELS: tuple[str, ...] = ("call", "app", "store", "email")
CHANNEL_SHARE = np.array([0.5, 0.3, 0.1, 0.1])


@dataclass(frozen=True)
class Tickets:
    """Support contacts, one entry per ticket."""

    customer: np.ndarray
    day: np.ndarray
    opened_minute: np.ndarray  # minute of the day
    category: np.ndarray
    channel: np.ndarray
    is_complaint: np.ndarray
    resolution_hours: np.ndarray

    def per_day(self, shape: tuple[int, int], mask: np.ndarray | None = None) -> np.ndarray:
        """Count of tickets (optionally only those where ``mask``) per customer-day."""
        counts = np.zeros(shape, dtype=np.int32)
        keep = slice(None) if mask is None else mask
        np.add.at(counts, (self.customer[keep], self.day[keep]), 1)
        return counts

    def select(self, keep: np.ndarray) -> Tickets:
        return Tickets(*(getattr(self, f)[keep] for f in self.__dataclass_fields__))


def simulate_tickets(
    customers: Customers, experience: Experience, rng: np.random.Generator
) -> Tickets:
    network_trouble = (
        6e-3
        * customers.network_sensitivity[:, None]
        * np.minimum(experience.outage_minutes, 600)
        / 60
        + 4e-3 * np.minimum(experience.degraded_minutes, 600) / 60
        + 0.03 * (experience.failed_sessions >= 4)
    )
    background = 1.2e-3 * np.where(customers.segment == 2, 1.5, 1.0)[:, None]
    counts = rng.poisson(network_trouble + background)
    customer, day = np.nonzero(counts)
    repeats = counts[customer, day]
    customer, day = np.repeat(customer, repeats), np.repeat(day, repeats)
    n = len(customer)
    share_network = network_trouble[customer, day] / (network_trouble + background)[customer, day]
    background_category = rng.choice(4, n, p=BACKGROUND_CATEGORY_SHARE)
    category = np.where(rng.random(n) < share_network, 0, background_category)
    bad_outage = experience.outage_minutes[customer, day] >= GOODWILL_OUTAGE_MINUTES
    complaint_rate = np.where(category == 0, np.where(bad_outage, 0.3, 0.1), 0.05)
    return Tickets(
        customer=customer,
        day=day,
        opened_minute=rng.integers(0, 1440, n),
        category=category,
        channel=rng.choice(len(CHANNELS), n, p=CHANNEL_SHARE),
        is_complaint=rng.random(n) < complaint_rate,
        resolution_hours=rng.lognormal(np.log(20), 1.0, n),
    )


@dataclass(frozen=True)
class Credits:
    """Goodwill credits of the operator's manual process (before closedloop acts)."""

    customer: np.ndarray
    day: np.ndarray
    amount: np.ndarray


SLA_CREDIT_PROPENSITY = np.array([0.03, 0.08, 0.5, 0.6])


def simulate_credits(
    config: WorldConfig, customers: Customers, experience: Experience, rng: np.random.Generator
) -> Credits:
    bad_day = experience.outage_minutes[:, :-1] >= GOODWILL_OUTAGE_MINUTES
    granted = bad_day & (rng.random(bad_day.shape) < SLA_CREDIT_PROPENSITY[customers.sla][:, None])
    customer, day = np.nonzero(granted)
    outage = experience.outage_minutes[customer, day]
    amount = np.maximum(5.0, customers.mrr[customer] * outage / (30 * 1440) * 10).round(2)
    return Credits(customer=customer, day=day + 1, amount=amount)


@dataclass(frozen=True)
class Invoices:
    customer: np.ndarray
    day: np.ndarray  # issue day
    amount: np.ndarray
    days_to_pay: np.ndarray  # from the due date; negative is early


PAYMENT_TERMS_DAYS = 14


def simulate_invoices(
    config: WorldConfig, customers: Customers, rng: np.random.Generator
) -> Invoices:
    dates = np.datetime64(config.start, "D") + np.arange(config.days)
    day_of_month = (dates - dates.astype("datetime64[M]")).astype(int) + 1
    customer, day = np.nonzero(customers.bill_cycle_day[:, None] == day_of_month[None, :])
    n = len(customer)
    late = rng.random(n) < 0.04 + 0.6 * customers.financial_stress[customer]
    days_to_pay = np.where(late, rng.geometric(1 / 12, n), -rng.integers(0, 10, n))
    return Invoices(
        customer=customer,
        day=day,
        amount=(mrr_by_day(config, customers)[customer, day] * rng.uniform(1.0, 1.08, n)).round(2),
        days_to_pay=days_to_pay,
    )
