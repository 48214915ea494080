"""The true state of every cell in every interval: load, KPIs, injected faults and usage spikes.

Arrays are shaped (cells, intervals). Faults are injected on top of a daily and weekly load
pattern; some kinds are preceded by leading signals (creeping loss, rising congestion) so that a
fault model has something to learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from closedloop.world import catalog
from closedloop.world.config import WorldConfig
from closedloop.world.inventory import Cells


@dataclass(frozen=True)
class Incidents:
    """Injected faults, one row per affected cell; times in minutes from the world's start."""

    incident: np.ndarray  # incident number, shared by the cells of one fault
    kind: np.ndarray  # index into catalog.FAULT_KINDS
    cell: np.ndarray
    start_min: np.ndarray
    end_min: np.ndarray
    lead_start_min: np.ndarray  # NaN when the kind has no leading signal

    def __len__(self) -> int:
        return len(self.cell)


@dataclass(frozen=True)
class Spikes:
    """Injected usage spikes (events, festivals): cell, interval range, demand multiplier."""

    cell: np.ndarray
    start: np.ndarray
    end: np.ndarray
    multiplier: np.ndarray


@dataclass(frozen=True)
class Network:
    interval_minutes: int
    start: np.datetime64  # the world's first instant, UTC
    demand: np.ndarray  # offered load as a share of capacity
    down: np.ndarray  # share of the interval out of service
    availability_pct: np.ndarray
    latency_ms: np.ndarray  # NaN when fully down
    loss_pct: np.ndarray
    throughput_mbps: np.ndarray
    prb_pct: np.ndarray
    users: np.ndarray
    alarms: np.ndarray
    incidents: Incidents
    spikes: Spikes

    @property
    def shape(self) -> tuple[int, int]:
        return self.demand.shape

    def interval_starts(self) -> np.ndarray:
        steps = np.arange(self.shape[1]) * self.interval_minutes
        return self.start + steps.astype("timedelta64[m]")


def local_clock(config: WorldConfig, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local hour (fractional) and weekday of each interval start, per region: (regions, T)."""
    utc = pd.DatetimeIndex(starts).tz_localize("UTC")
    hours, weekdays = [], []
    for region in catalog.REGIONS:
        local = utc.tz_convert(region.timezone)
        hours.append(local.hour.to_numpy() + local.minute.to_numpy() / 60)
        weekdays.append(local.day_of_week.to_numpy())
    return np.array(hours), np.array(weekdays)


def _daily_shape(hour: np.ndarray) -> np.ndarray:
    """Demand through the day, 1.0 at the evening busy hour."""
    evening = np.exp(-(((hour - 20.5) / 3.5) ** 2))
    midday = 0.75 * np.exp(-(((hour - 13.0) / 3.0) ** 2))
    return 0.18 + 0.82 * np.maximum(evening, midday)


def _overlap(start_min: float, end_min: float, step: int, t: int) -> tuple[int, np.ndarray]:
    """First interval index and the share of each interval covered by [start, end)."""
    first = max(0, int(start_min // step))
    last = min(t, int(np.ceil(end_min / step)))
    edges = np.arange(first, last + 1) * step
    covered = np.minimum(edges[1:], end_min) - np.maximum(edges[:-1], start_min)
    return first, np.clip(covered / step, 0, 1)


def _ramp(lead_min: float, start_min: float, step: int) -> tuple[int, np.ndarray]:
    """First interval index and 0→1 progress of each interval through a lead window."""
    first = max(0, int(lead_min // step))
    last = max(first, int(start_min // step))
    mids = (np.arange(first, last) + 0.5) * step
    return first, np.clip((mids - lead_min) / (start_min - lead_min), 0, 1)


def make_incidents(config: WorldConfig, cells: Cells, rng: np.random.Generator) -> Incidents:
    horizon = config.days * 1440
    count = rng.poisson(config.incident_rate * len(cells) * config.days)
    shares = np.array([k.share for k in catalog.FAULT_KINDS])
    kinds = rng.choice(len(catalog.FAULT_KINDS), count, p=shares / shares.sum())
    primary = rng.integers(0, len(cells), count)
    rows: list[tuple[int, int, int, float, float, float]] = []
    for number, (kind_index, cell) in enumerate(zip(kinds, primary, strict=True)):
        kind = catalog.FAULT_KINDS[kind_index]
        duration = kind.duration_median_min * rng.lognormal(0, 0.6)
        start = rng.uniform(60, horizon - 60)
        end = min(start + max(duration, 10), horizon)
        lead = np.nan
        if kind.lead_hours:
            lead = max(0.0, start - 60 * rng.uniform(*kind.lead_hours))
        neighbours = np.flatnonzero(
            (cells.region == cells.region[cell]) & (np.arange(len(cells)) != cell)
        )
        extra = min(len(neighbours), rng.integers(kind.extra_cells[0], kind.extra_cells[1] + 1))
        affected = [cell, *rng.choice(neighbours, extra, replace=False)]
        rows.extend((number, kind_index, int(c), start, end, lead) for c in affected)
    columns = list(zip(*rows, strict=True)) if rows else [()] * 6
    incident, kind, cell, start, end, lead = (np.array(c) for c in columns)
    return Incidents(
        incident=incident.astype(np.int64),
        kind=kind.astype(np.int64),
        cell=cell.astype(np.int64),
        start_min=start.astype(float),
        end_min=end.astype(float),
        lead_start_min=lead.astype(float),
    )


def make_spikes(config: WorldConfig, cells: Cells, rng: np.random.Generator) -> Spikes:
    t = config.days * config.intervals_per_day
    count = rng.poisson(config.usage_spike_rate * len(cells) * config.days)
    start = rng.integers(0, t, count)
    length = np.ceil(rng.uniform(120, 300, count) / config.interval_minutes).astype(int)
    return Spikes(
        cell=rng.integers(0, len(cells), count),
        start=start,
        end=np.minimum(start + length, t),
        multiplier=rng.uniform(1.8, 3.0, count),
    )


def simulate_network(config: WorldConfig, cells: Cells, rng: np.random.Generator) -> Network:
    step = config.interval_minutes
    n_cells, t = len(cells), config.days * config.intervals_per_day
    start = np.datetime64(config.start, "m")
    starts = start + (np.arange(t) * step).astype("timedelta64[m]")
    hour, weekday = local_clock(config, starts)
    day = np.arange(t) // config.intervals_per_day

    weekly = np.where(weekday[cells.region] >= 5, 0.9, 1.0)
    day_factor = rng.lognormal(0, 0.08, (n_cells, config.days))[:, day]
    growth = 1 + 0.001 * day
    demand = (
        cells.busy_hour_load[:, None]
        * _daily_shape(hour[cells.region])
        * weekly
        * day_factor
        * growth
        * (1 + 0.06 * rng.standard_normal((n_cells, t)))
    )
    spikes = make_spikes(config, cells, rng)
    for c, s, e, m in zip(spikes.cell, spikes.start, spikes.end, spikes.multiplier, strict=True):
        demand[c, s:e] *= m

    incidents = make_incidents(config, cells, rng)
    down = np.zeros((n_cells, t))
    loss_add = np.zeros((n_cells, t))
    latency_factor = np.ones((n_cells, t))
    alarm_rate = np.full((n_cells, t), 0.002)
    for i in range(len(incidents)):
        kind = catalog.FAULT_KINDS[incidents.kind[i]]
        c, s, e = incidents.cell[i], incidents.start_min[i], incidents.end_min[i]
        first, cover = _overlap(s, e, step, t)
        span = slice(first, first + len(cover))
        if not np.isnan(incidents.lead_start_min[i]):
            lead_first, progress = _ramp(incidents.lead_start_min[i], s, step)
            lead = slice(lead_first, lead_first + len(progress))
            if kind.name == "hardware_failure":
                loss_add[c, lead] += progress * rng.uniform(2, 4)
                latency_factor[c, lead] *= 1 + 0.3 * progress
            else:
                demand[c, lead] *= 1 + rng.uniform(0.3, 0.6) * progress
        if kind.outage:
            down[c, span] = np.maximum(down[c, span], cover)
            alarm_rate[c, span] += 3 * cover
        elif kind.name == "congestion":
            demand[c, span] *= 1 + rng.uniform(0.6, 1.2) * cover
        else:
            loss_add[c, span] += rng.uniform(2, 6) * cover
            latency_factor[c, span] *= 1 + rng.uniform(0.5, 1.5) * cover
            alarm_rate[c, span] += cover

    served = np.minimum(demand, 0.98)
    overload = np.maximum(demand - 1, 0)
    latency = (
        cells.baseline_latency_ms[:, None]
        * (1 + 0.15 * served / (1.05 - served))
        * (1 + 1.5 * overload)
        * latency_factor
        * rng.lognormal(0, 0.06, (n_cells, t))
    )
    loss = np.clip(
        (0.03 + 2.0 * np.maximum(demand - 0.8, 0) ** 1.5) * rng.lognormal(0, 0.2, (n_cells, t))
        + loss_add,
        0,
        100,
    )
    up = 1 - down
    utilisation = np.minimum(demand, 1) * up
    latency[down > 0.999] = np.nan
    return Network(
        interval_minutes=step,
        start=start,
        demand=demand,
        down=down,
        availability_pct=100 * up,
        latency_ms=latency,
        loss_pct=loss,
        throughput_mbps=cells.capacity_mbps[:, None] * utilisation * (1 - loss / 100) * 0.95,
        prb_pct=100 * utilisation,
        users=np.rint(cells.max_users[:, None] * np.minimum(demand, 1.2) / 1.2 * up).astype(
            np.int32
        ),
        alarms=rng.poisson(alarm_rate).astype(np.int32),
        incidents=incidents,
        spikes=spikes,
    )
