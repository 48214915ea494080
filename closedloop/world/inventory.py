"""Cells and customers: who is on the network and what serves them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from closedloop.world import catalog
from closedloop.world.config import WorldConfig


def sample_rows(rng: np.random.Generator, probs: np.ndarray, group: np.ndarray) -> np.ndarray:
    """One categorical draw per row, from the probability row ``probs[group[i]]``."""
    cumulative = probs.cumsum(axis=1)[group]
    cumulative[:, -1] = 1.0
    return (rng.random(len(group))[:, None] > cumulative).sum(axis=1)


def format_ids(prefix: str, count: int, width: int) -> np.ndarray:
    return np.array([f"{prefix}_{i:0{width}d}" for i in range(1, count + 1)], dtype=object)


@dataclass(frozen=True)
class Cells:
    """Radio cells; categorical fields are indices into the catalog."""

    ids: np.ndarray
    region: np.ndarray
    vendor: np.ndarray
    technology: np.ndarray
    capacity_mbps: np.ndarray
    max_users: np.ndarray
    baseline_latency_ms: np.ndarray
    busy_hour_load: np.ndarray  # demand at the busy hour as a share of capacity (truth)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Customers:
    """Customers at the world's start, with their latent traits (truth)."""

    ids: np.ndarray
    segment: np.ndarray
    sla: np.ndarray
    plan: np.ndarray
    list_price: np.ndarray
    mrr: np.ndarray
    contract: np.ndarray
    contract_end_day: np.ndarray  # day index of the commitment's end; -1 when none
    tenure_days: np.ndarray
    region: np.ndarray
    cell: np.ndarray
    device: np.ndarray
    do_not_contact: np.ndarray
    bill_cycle_day: np.ndarray
    price_sensitivity: np.ndarray
    network_sensitivity: np.ndarray
    financial_stress: np.ndarray
    exposure: np.ndarray  # share of the serving cell's outages this customer feels

    def __len__(self) -> int:
        return len(self.ids)


def _cells_per_region(total: int) -> np.ndarray:
    shares = np.array([r.share for r in catalog.REGIONS])
    counts = np.maximum(1, np.floor(shares * total)).astype(int)
    while counts.sum() < total:
        counts[np.argmax(shares * total - counts)] += 1
    while counts.sum() > total:
        counts[np.argmax(counts)] -= 1
    return counts


def make_cells(config: WorldConfig, rng: np.random.Generator) -> Cells:
    counts = _cells_per_region(config.cells)
    region = np.repeat(np.arange(len(catalog.REGIONS)), counts)
    n = len(region)
    home_vendor = np.array([catalog.VENDORS.index(r.vendor) for r in catalog.REGIONS])[region]
    swapped = rng.random(n) < catalog.OTHER_VENDOR_SHARE
    vendor = np.where(swapped, 1 - home_vendor, home_vendor)
    urban = np.array([r.urban for r in catalog.REGIONS])[region]
    technology = (rng.random(n) < 0.2 + 0.5 * urban).astype(int)  # 1 = nr
    capacity = np.where(technology == 1, rng.uniform(400, 1000, n), rng.uniform(150, 300, n))
    max_users = np.where(technology == 1, rng.integers(300, 800, n), rng.integers(150, 400, n))
    latency = np.where(technology == 1, rng.uniform(12, 20, n), rng.uniform(28, 40, n))
    busy_hour_load = np.clip(rng.beta(5, 4, n) * (0.7 + 0.4 * urban), 0.2, 0.95)
    return Cells(
        ids=format_ids("cell", n, 5),
        region=region,
        vendor=vendor,
        technology=technology,
        capacity_mbps=capacity.round(1),
        max_users=max_users.astype(np.int32),
        baseline_latency_ms=latency.round(2),
        busy_hour_load=busy_hour_load,
    )


def _plans_by_segment() -> np.ndarray:
    probs = np.zeros((len(catalog.SEGMENTS), len(catalog.PLANS)))
    for j, plan in enumerate(catalog.PLANS):
        probs[catalog.SEGMENTS.index(plan.segment), j] = plan.share
    return probs


def make_customers(config: WorldConfig, cells: Cells, rng: np.random.Generator) -> Customers:
    n = config.customers
    segment = rng.choice(len(catalog.SEGMENTS), n, p=catalog.SEGMENT_SHARE)
    sla = sample_rows(rng, catalog.SLA_BY_SEGMENT, segment)
    plan = sample_rows(rng, _plans_by_segment(), segment)
    list_price = np.array([p.list_price for p in catalog.PLANS])[plan]
    spread = np.array([p.price_spread for p in catalog.PLANS])[plan]
    mrr = (list_price * np.exp(rng.normal(0, 1, n) * spread)).round(2)

    contract = sample_rows(rng, catalog.CONTRACT_BY_SEGMENT, segment)
    term_days = catalog.CONTRACT_DAYS[contract]
    contract_end_day = np.where(term_days > 0, (rng.random(n) * term_days).astype(int) + 1, -1)
    tenure_days = np.where(segment == 0, rng.exponential(900, n), rng.exponential(1500, n)).astype(
        int
    ) + rng.integers(0, 30, n)

    region_share = np.array([r.share for r in catalog.REGIONS])
    region = rng.choice(len(catalog.REGIONS), n, p=region_share / region_share.sum())
    cell = np.empty(n, dtype=np.int64)
    for r in range(len(catalog.REGIONS)):
        members = np.flatnonzero(region == r)
        region_cells = np.flatnonzero(cells.region == r)
        cell[members] = region_cells[rng.integers(0, len(region_cells), len(members))]

    device = sample_rows(rng, catalog.DEVICE_BY_SEGMENT, segment)
    is_enterprise = segment == 2
    price_sensitivity = np.clip(rng.beta(2.2, 2.5, n) - 0.2 * (segment > 0), 0, 1)
    network_sensitivity = np.clip(rng.beta(2.0, 2.2, n) + 0.25 * is_enterprise, 0, 1)
    return Customers(
        ids=format_ids("cus", n, 7),
        segment=segment,
        sla=sla,
        plan=plan,
        list_price=list_price,
        mrr=mrr,
        contract=contract,
        contract_end_day=contract_end_day,
        tenure_days=tenure_days,
        region=region,
        cell=cell,
        device=device,
        do_not_contact=rng.random(n) < 0.07,
        bill_cycle_day=rng.integers(1, 29, n).astype(np.int8),
        price_sensitivity=price_sensitivity,
        network_sensitivity=network_sensitivity,
        financial_stress=rng.beta(1.5, 6.0, n),
        exposure=rng.uniform(0.6, 1.0, n),
    )


def price_changed(config: WorldConfig, customers: Customers) -> np.ndarray:
    """Which customers the configured price change (if any) applies to."""
    change = config.drift.price
    if change is None:
        return np.zeros(len(customers), dtype=bool)
    names = [r.name for r in catalog.REGIONS]
    return customers.region == names.index(change.region)


def mrr_by_day(config: WorldConfig, customers: Customers) -> np.ndarray:
    """(customers, days): the price each customer pays each day, after any price change."""
    mrr = np.broadcast_to(customers.mrr[:, None], (len(customers), config.days)).copy()
    change = config.drift.price
    if change is not None:
        mrr[price_changed(config, customers), change.day :] *= change.factor
    return mrr
