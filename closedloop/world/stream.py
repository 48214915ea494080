"""The network event stream serving consumes: alarms, KPI degradations, usage spikes, failures.

Alarms follow the injected faults (with flapping re-raises and the odd lost clear) plus
background noise alarms; KPI degradations are threshold crossings of the true KPIs; repeated
failures are customer-days with many failed sessions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from closedloop.events import EventType, NetworkEvent, Severity
from closedloop.world import catalog
from closedloop.world.config import Dirt
from closedloop.world.experience import DEGRADED_LOSS_PCT
from closedloop.world.inventory import Cells, Customers
from closedloop.world.network import Network

KPI_LATENCY_FACTOR = 2.5  # a degradation event fires above this many times idle latency
REPEATED_FAILURES = 6  # failed sessions in a day that make a repeated-failure event
NOISE_ALARM_RATE = 0.05  # background alarms per cell per day
EVENT_COLUMNS = tuple(NetworkEvent.model_fields)


def _frame(count: int, **columns) -> pd.DataFrame:
    """``count`` events; scalars are broadcast, columns not given are left out (null)."""
    return pd.DataFrame(columns, index=range(count))


def _incident_alarms(network: Network, cells: Cells, dirt: Dirt, rng) -> list[pd.DataFrame]:
    incidents = network.incidents
    kinds = [catalog.FAULT_KINDS[k] for k in incidents.kind]
    raised = np.array([k.alarm is not None for k in kinds], dtype=bool)
    idx = np.flatnonzero(raised)
    n = idx.size
    alarm_id = np.array([f"alm_{incidents.incident[i]:06d}_{incidents.cell[i]:05d}" for i in idx])
    cause = np.array([kinds[i].alarm for i in idx], dtype=object)
    severity = np.where(
        [kinds[i].outage for i in idx], Severity.CRITICAL.value, Severity.MAJOR.value
    )
    cell_ids = cells.ids[incidents.cell[idx]]
    onset_min = incidents.start_min[idx] + rng.uniform(0.2, 3, n)
    repeats = np.where(rng.random(n) < dirt.flapping_rate, rng.integers(1, 4, n), 0)
    again = np.repeat(np.arange(n), repeats)
    onset_minutes = np.concatenate([onset_min, onset_min[again] + rng.uniform(1, 10, again.size)])
    onset_rows = np.concatenate([np.arange(n), again])
    cleared = rng.random(n) >= dirt.lost_clear_rate
    clear_min = incidents.end_min[idx][cleared] + rng.uniform(0.2, 5, cleared.sum())
    onsets = _frame(
        onset_rows.size,
        event_type=EventType.ALARM_ONSET.value,
        minute=onset_minutes,
        cell_id=cell_ids[onset_rows],
        severity=severity[onset_rows],
        alarm_id=alarm_id[onset_rows],
        description=cause[onset_rows],
    )
    clears = _frame(
        int(cleared.sum()),
        event_type=EventType.ALARM_CLEAR.value,
        minute=clear_min,
        cell_id=cell_ids[cleared],
        severity=severity[cleared],
        alarm_id=alarm_id[cleared],
        description=cause[cleared],
    )
    return [onsets, clears]


def _noise_alarms(network: Network, cells: Cells, rng) -> list[pd.DataFrame]:
    horizon = network.shape[1] * network.interval_minutes
    n = rng.poisson(NOISE_ALARM_RATE * len(cells) * horizon / 1440)
    cell = rng.integers(0, len(cells), n)
    onset = rng.uniform(0, horizon, n)
    alarm_id = np.array([f"alm_noise_{i:06d}" for i in range(n)])
    cause = np.array(catalog.NOISE_ALARMS, dtype=object)[
        rng.integers(0, len(catalog.NOISE_ALARMS), n)
    ]
    common = {
        "cell_id": cells.ids[cell],
        "severity": np.where(rng.random(n) < 0.5, Severity.MINOR.value, Severity.WARNING.value),
        "alarm_id": alarm_id,
        "description": cause,
    }
    return [
        _frame(n, event_type=EventType.ALARM_ONSET.value, minute=onset, **common),
        _frame(
            n,
            event_type=EventType.ALARM_CLEAR.value,
            minute=onset + rng.uniform(2, 20, n),
            **common,
        ),
    ]


def _kpi_degradations(network: Network, cells: Cells, rng) -> pd.DataFrame:
    threshold = KPI_LATENCY_FACTOR * cells.baseline_latency_ms[:, None]
    slow = np.nan_to_num(network.latency_ms, nan=0.0) > threshold
    lossy = network.loss_pct > DEGRADED_LOSS_PCT
    bad = slow | lossy
    onset = bad & ~np.concatenate([np.zeros((bad.shape[0], 1), bool), bad[:, :-1]], axis=1)
    cell, interval = np.nonzero(onset)
    by_latency = slow[cell, interval]
    return _frame(
        cell.size,
        event_type=EventType.KPI_DEGRADATION.value,
        minute=(interval + 1) * network.interval_minutes + rng.uniform(0.5, 2, cell.size),
        cell_id=cells.ids[cell],
        severity=Severity.MAJOR.value,
        description=np.where(by_latency, "latency above threshold", "packet loss above threshold"),
        metric=np.where(by_latency, "latency_ms", "packet_loss_pct"),
        value=np.where(
            by_latency, network.latency_ms[cell, interval], network.loss_pct[cell, interval]
        ).round(3),
        threshold=np.where(by_latency, threshold[cell, 0], DEGRADED_LOSS_PCT).round(3),
    )


def _usage_spikes(network: Network, cells: Cells, rng) -> pd.DataFrame:
    spikes = network.spikes
    first_full = np.minimum(spikes.start + 1, network.shape[1] - 1)
    return _frame(
        spikes.cell.size,
        event_type=EventType.USAGE_SPIKE.value,
        minute=(spikes.start + 1) * network.interval_minutes
        + rng.uniform(0.5, 2, spikes.cell.size),
        cell_id=cells.ids[spikes.cell],
        severity=Severity.WARNING.value,
        description="connected users far above the usual level",
        metric="connected_users",
        value=network.users[spikes.cell, first_full].astype(float),
        threshold=(cells.max_users[spikes.cell] * 0.5).astype(float),
    )


def _repeated_failures(
    customers: Customers, cells: Cells, failed: np.ndarray, active: np.ndarray, rng
) -> pd.DataFrame:
    customer, day = np.nonzero((failed >= REPEATED_FAILURES) & active)
    return _frame(
        customer.size,
        event_type=EventType.REPEATED_FAILURE.value,
        minute=day * 1440 + rng.uniform(600, 1439, customer.size),
        cell_id=cells.ids[customers.cell[customer]],
        customer_id=customers.ids[customer],
        severity=Severity.MINOR.value,
        description="repeated failed sessions",
        metric="failed_sessions",
        value=failed[customer, day].astype(float),
        threshold=float(REPEATED_FAILURES),
    )


def simulate_events(
    network: Network,
    cells: Cells,
    customers: Customers,
    failed_sessions: np.ndarray,
    active: np.ndarray,
    dirt: Dirt,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """All events in time order, with the columns of :class:`NetworkEvent`."""
    frames = [
        *_incident_alarms(network, cells, dirt, rng),
        *_noise_alarms(network, cells, rng),
        _kpi_degradations(network, cells, rng),
        _usage_spikes(network, cells, rng),
        _repeated_failures(customers, cells, failed_sessions, active, rng),
    ]
    events = pd.concat([f for f in frames if len(f)], ignore_index=True).reindex(
        columns=[*EVENT_COLUMNS, "minute"]
    )
    start = pd.Timestamp(network.start.astype("datetime64[ms]"), tz="UTC")
    minute = events.pop("minute").to_numpy(dtype=float)
    events["occurred_at"] = start + pd.to_timedelta(np.round(minute * 60_000), unit="ms")
    events = events.sort_values(["occurred_at", "event_type", "cell_id"], kind="stable")
    events["event_id"] = [f"evt_{h:016x}" for h in rng.integers(0, 2**63, len(events))]
    return events.reset_index(drop=True)[list(EVENT_COLUMNS)]
