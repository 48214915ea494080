"""Render the true network state as each vendor's raw telemetry, dirt included.

aurora reports gauges stamped with the interval start in UTC and latency in ms. zenith
reports cumulative counters (which restart after a reboot) stamped with the interval end in
the site's local time, latency in µs and PRB use as a ratio. Both lose, repeat, delay and
garble records the way real collectors do; how many of each is counted for the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from closedloop.world import catalog
from closedloop.world.config import Dirt, FirmwareUpdate
from closedloop.world.inventory import Cells
from closedloop.world.network import Network
from closedloop.world.schemas import (
    AURORA_TELEMETRY,
    ZENITH_TELEMETRY,
    build_table,
    id_array,
    masked,
)

MS_PER_MINUTE = 60_000
PACKET_BYTES = 1200


@dataclass(frozen=True)
class RawTelemetry:
    """One vendor's raw records, ordered by arrival."""

    vendor: str
    table: pa.Table
    received_ms: np.ndarray  # arrival of each row, Unix ms
    dirt: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Rows:
    """The (cell, interval) rows a vendor emits, after loss, duplication and delay."""

    cell: np.ndarray  # index into the vendor's cells
    interval: np.ndarray
    received_ms: np.ndarray
    glitched: np.ndarray  # reported in the wrong unit
    spiked: np.ndarray  # one value out of range
    dirt: dict[str, int]


def _emitted_rows(
    network: Network, vendor_cells: np.ndarray, dirt: Dirt, rng: np.random.Generator
) -> _Rows:
    n_cells, t = len(vendor_cells), network.shape[1]
    per_day = 1440 // network.interval_minutes
    cell = np.repeat(np.arange(n_cells), t)
    interval = np.tile(np.arange(t), n_cells)
    silent = (network.down[vendor_cells] > 0.999).ravel() & (
        rng.random(cell.size) < dirt.outage_silence_rate
    )
    lost = rng.random(cell.size) < dirt.missing_rate
    keep = ~(silent | lost)
    cell, interval = cell[keep], interval[keep]

    duplicated = np.flatnonzero(rng.random(cell.size) < dirt.duplicate_rate)
    cell = np.concatenate([cell, cell[duplicated]])
    interval = np.concatenate([interval, interval[duplicated]])
    n = cell.size
    start_ms = network.start.astype("datetime64[ms]").astype(np.int64)
    end_ms = start_ms + (interval + 1) * network.interval_minutes * MS_PER_MINUTE
    delay_ms = rng.uniform(30_000, 300_000, n)
    late = rng.random(n) < dirt.late_rate
    delay_ms[late] += rng.uniform(3_600_000, dirt.max_late_hours * 3_600_000, late.sum())
    resent = np.arange(n) >= n - duplicated.size
    delay_ms[resent] += rng.uniform(0, 6 * 3_600_000, resent.sum())

    glitch_days = rng.random((n_cells, t // per_day)) < dirt.unit_glitch_rate
    glitched = glitch_days[cell, interval // per_day]
    spiked = rng.random(n) < dirt.spike_rate
    return _Rows(
        cell=cell,
        interval=interval,
        received_ms=end_ms + delay_ms.astype(np.int64),
        glitched=glitched,
        spiked=spiked,
        dirt={
            "intervals": n_cells * t,
            "missing": int(lost.sum()),
            "silent_during_outage": int((silent & ~lost).sum()),
            "duplicates": int(duplicated.size),
            "late": int(late.sum()),
            "unit_glitches": int(glitched.sum()),
            "spikes": int(spiked.sum()),
        },
    )


def _spike(values: np.ndarray, rows: np.ndarray, low: float, high: float, rng) -> None:
    values[rows] = rng.uniform(low, high, rows.size)


def _split_spikes(spiked: np.ndarray, parts: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Spread the spiked rows over ``parts`` fields at random."""
    rows = np.flatnonzero(spiked)
    which = rng.integers(0, parts, rows.size)
    return [rows[which == k] for k in range(parts)]


def _ordered(table: pa.Table, received_ms: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    order = np.argsort(received_ms, kind="stable")
    return table.take(pa.array(order)), received_ms[order]


def _updated(
    firmware: FirmwareUpdate | None, vendor: str, network: Network, rows: _Rows
) -> np.ndarray:
    """Which emitted rows come from cells already running the new firmware."""
    if firmware is None or firmware.vendor != vendor:
        return np.zeros(rows.interval.size, dtype=bool)
    return rows.interval >= firmware.day * (1440 // network.interval_minutes)


def render_aurora(
    network: Network,
    cells: Cells,
    vendor_cells: np.ndarray,
    dirt: Dirt,
    rng: np.random.Generator,
    firmware: FirmwareUpdate | None = None,
) -> RawTelemetry:
    rows = _emitted_rows(network, vendor_cells, dirt, rng)
    at = (vendor_cells[rows.cell], rows.interval)
    start_ms = network.start.astype("datetime64[ms]").astype(np.int64)
    latency = network.latency_ms[at].round(2)
    latency[rows.glitched] *= 1000  # firmware briefly reports µs in the ms field
    updated = _updated(firmware, "aurora", network, rows)
    latency[updated] *= firmware.latency_factor if firmware else 1.0
    availability = network.availability_pct[at].round(3)
    loss = network.loss_pct[at].round(3)
    loss[updated] *= firmware.loss_factor if firmware else 1.0
    prb = network.prb_pct[at].round(2)
    spikes = _split_spikes(rows.spiked, 4, rng)
    _spike(availability, spikes[0], 101, 400, rng)
    _spike(latency, spikes[1], 5e4, 1e6, rng)
    _spike(loss, spikes[2], 101, 1000, rng)
    _spike(prb, spikes[3], 101, 300, rng)
    columns = {
        "cell_id": id_array(cells.ids, vendor_cells[rows.cell]),
        "ts_utc": start_ms + rows.interval * network.interval_minutes * MS_PER_MINUTE,
        "availability_pct": availability,
        "latency_ms": masked(np.nan_to_num(latency), pa.float64(), np.isnan(latency)),
        "pkt_loss_pct": loss,
        "dl_throughput_mbps": network.throughput_mbps[at].round(2),
        "prb_util_pct": prb,
        "rrc_connected_users": network.users[at],
        "alarm_count": network.alarms[at],
        "received_at": rows.received_ms,
    }
    table, received = _ordered(build_table(AURORA_TELEMETRY, columns), rows.received_ms)
    return RawTelemetry("aurora", table, received, rows.dirt)


def _counters(per_interval: np.ndarray, restarts: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """Cumulative counters that start at ``initial`` and fall back to zero after each restart."""
    total = np.cumsum(per_interval, axis=1)
    before = np.zeros_like(total)
    cells, first = np.nonzero(restarts)
    before[cells, first] = total[cells, first - 1]
    before = np.maximum.accumulate(before, axis=1)
    never_restarted = np.cumsum(restarts, axis=1) == 0
    return np.floor(total - before + initial[:, None] * never_restarted).astype(np.int64)


def _restarts(network: Network, vendor_cells: np.ndarray, enabled: bool) -> np.ndarray:
    """(vendor cells, T): True at the first interval after a reboot-causing fault."""
    t = network.shape[1]
    marks = np.zeros((len(vendor_cells), t), dtype=bool)
    if not enabled:
        return marks
    position = {c: i for i, c in enumerate(vendor_cells)}
    restarting = [k.name in catalog.RESTARTING_FAULTS for k in catalog.FAULT_KINDS]
    incidents = network.incidents
    for i in range(len(incidents)):
        after = int(np.ceil(incidents.end_min[i] / network.interval_minutes))
        if restarting[incidents.kind[i]] and incidents.cell[i] in position and 0 < after < t:
            marks[position[incidents.cell[i]], after] = True
    return marks


def _local_interval_ends(network: Network, cells: Cells) -> np.ndarray:
    """(regions, T) local wall-clock time of each interval end, as Unix ms."""
    ends = network.interval_starts() + np.timedelta64(network.interval_minutes, "m")
    utc = pd.DatetimeIndex(ends).tz_localize("UTC")
    return np.array(
        [
            utc.tz_convert(region.timezone)
            .tz_localize(None)
            .to_numpy()
            .astype("datetime64[ms]")
            .astype(np.int64)
            for region in catalog.REGIONS
        ]
    )


def render_zenith(
    network: Network,
    cells: Cells,
    vendor_cells: np.ndarray,
    dirt: Dirt,
    rng: np.random.Generator,
    firmware: FirmwareUpdate | None = None,
) -> RawTelemetry:
    seconds = network.interval_minutes * 60
    restarts = _restarts(network, vendor_cells, dirt.counter_resets)
    throughput = network.throughput_mbps[vendor_cells]
    packets = throughput * seconds * 1e6 / 8 / PACKET_BYTES
    n_cells = len(vendor_cells)
    counters = {
        "UNAVAIL_S_CUM": network.down[vendor_cells] * seconds,
        "PKT_TX_CUM": packets,
        "PKT_LOST_CUM": packets * network.loss_pct[vendor_cells] / 100,
        "DL_KBYTES_CUM": throughput * seconds * 125,
    }
    initial = {
        "UNAVAIL_S_CUM": rng.integers(0, 10**5, n_cells),
        "PKT_TX_CUM": rng.integers(0, 10**12, n_cells),
        "PKT_LOST_CUM": rng.integers(0, 10**9, n_cells),
        "DL_KBYTES_CUM": rng.integers(0, 10**12, n_cells),
    }
    cumulative = {k: _counters(v, restarts, initial[k]) for k, v in counters.items()}

    rows = _emitted_rows(network, vendor_cells, dirt, rng)
    at = (vendor_cells[rows.cell], rows.interval)
    local_end = _local_interval_ends(network, cells)[cells.region[at[0]], rows.interval]
    rtt = np.rint(network.latency_ms[at] * 1000)
    rtt[_updated(firmware, "zenith", network, rows)] *= firmware.latency_factor if firmware else 1
    prb_ratio = (network.prb_pct[at] / 100).round(4)
    prb_ratio[rows.glitched] *= 100  # a software load reports percent in the ratio field
    users = network.users[at].astype(np.float64)
    spikes = _split_spikes(rows.spiked, 3, rng)
    _spike(rtt, spikes[0], 1e8, 1e9, rng)
    _spike(prb_ratio, spikes[1], 1.5, 9, rng)
    _spike(users, spikes[2], -500, -1, rng)
    columns = {
        "NE_ID": id_array(cells.ids, vendor_cells[rows.cell]),
        "LOCAL_TIME": local_end,
        "RTT_AVG_US": masked(np.nan_to_num(rtt).astype(np.int64), pa.int64(), np.isnan(rtt)),
        **{k: v[rows.cell, rows.interval] for k, v in cumulative.items()},
        "PRB_USAGE_RATIO": prb_ratio,
        "CONN_UE_AVG": users,
        "ALARM_NUM": network.alarms[at],
        "RECV_EPOCH_MS": rows.received_ms,
    }
    table, received = _ordered(build_table(ZENITH_TELEMETRY, columns), rows.received_ms)
    dirt_counts = {**rows.dirt, "counter_resets": int(restarts.sum())}
    return RawTelemetry("zenith", table, received, dirt_counts)


def render_telemetry(
    network: Network,
    cells: Cells,
    dirt: Dirt,
    rng: np.random.Generator,
    firmware: FirmwareUpdate | None = None,
) -> list[RawTelemetry]:
    renderers = {"aurora": render_aurora, "zenith": render_zenith}
    return [
        renderers[vendor](network, cells, np.flatnonzero(cells.vendor == v), dirt, rng, firmware)
        for v, vendor in enumerate(catalog.VENDORS)
    ]
