"""Vendor normalisation: each vendor's raw telemetry into the canonical ``cell_telemetry`` rows.

aurora already speaks nearly canonical: gauges, interval start in UTC, ms. zenith needs work:
its interval END is stamped in the site's local time, latency is in µs, PRB use is a ratio,
and availability, loss and throughput are cumulative counters. Counters are differenced per
cell in time order (a drop means the counter restarted, so the new value is the increase);
a gap of missing samples makes one row that covers the whole gap. A cell's first sample has
nothing to difference against and is rejected with that reason, as are local times that do
not exist or are ambiguous in the site's zone.

Each function returns the canonical frame indexed like its input, and the reasons for the
input rows it could not normalise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.quarantine import merge_reasons

UTC = "UTC"


def reporting_interval_minutes(cell: pd.Series, stamp: pd.Series) -> float:
    """The commonest gap between consecutive distinct stamps of one cell, in minutes (the
    shortest of equally common ones)."""
    cells = pd.factorize(cell)[0]
    stamps = pd.to_datetime(stamp).to_numpy().astype("datetime64[ns]").astype(np.int64)
    known = ~pd.isna(stamp).to_numpy() & (cells >= 0)
    cells, stamps = cells[known], stamps[known]
    order = np.lexsort((stamps, cells))
    cells, stamps = cells[order], stamps[order]
    gaps = np.diff(stamps)[(np.diff(cells) == 0) & (np.diff(stamps) > 0)]
    if not len(gaps):
        raise ValueError("cannot tell the reporting interval: no cell reported twice")
    values, counts = np.unique(gaps, return_counts=True)
    return values[np.argmax(counts)] / 60e9


def normalise_aurora(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    interval = reporting_interval_minutes(raw["cell_id"], raw["ts_utc"])
    canonical = pd.DataFrame(
        {
            "cell_id": raw["cell_id"],
            "ts": raw["ts_utc"],
            "interval_minutes": interval,
            "availability_pct": raw["availability_pct"],
            "latency_ms": raw["latency_ms"],
            "packet_loss_pct": raw["pkt_loss_pct"],
            "throughput_mbps": raw["dl_throughput_mbps"],
            "prb_util_pct": raw["prb_util_pct"],
            "connected_users": raw["rrc_connected_users"].astype(float),
            "alarm_count": raw["alarm_count"].astype(float),
            "received_at": raw["received_at"],
            "vendor": "aurora",
        },
        index=raw.index,
    )
    return canonical, pd.Series(dtype=str)


def _to_utc(local: pd.Series, zones: pd.Series) -> pd.Series:
    """Naive local wall-clock times to UTC, zone by zone; NaT where the time cannot be placed."""
    utc = pd.Series(pd.NaT, index=local.index, dtype="datetime64[ms, UTC]")
    for zone, members in local.groupby(zones, sort=True):
        placed = members.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
        utc.loc[members.index] = placed.dt.tz_convert(UTC)
    return utc


COUNTERS = ("UNAVAIL_S_CUM", "PKT_TX_CUM", "PKT_LOST_CUM", "DL_KBYTES_CUM")


def _counter_increases(samples: pd.DataFrame) -> pd.DataFrame:
    """Per distinct (cell, ts) sample: seconds since the previous one and each counter's rise."""
    ordered = samples.sort_values(["cell_id", "ts"])
    previous = ordered.groupby("cell_id")[["ts", *COUNTERS]].shift(1)
    rises = {}
    for name in COUNTERS:
        rise = ordered[name] - previous[name]
        rises[name] = rise.where(rise >= 0, ordered[name])  # a drop is a restart from zero
    return pd.DataFrame(
        {
            "cell_id": ordered["cell_id"],
            "ts": ordered["ts"],
            "seconds": (ordered["ts"] - previous["ts"]).dt.total_seconds(),
            **rises,
        }
    )


def normalise_zenith(raw: pd.DataFrame, zones: dict[str, str]) -> tuple[pd.DataFrame, pd.Series]:
    """``zones`` maps each cell id to its IANA time zone (from the cell inventory)."""
    reasons = []
    zone = raw["NE_ID"].map(zones)
    unknown = zone.isna()
    reasons.append(
        pd.Series("NE_ID not in the cell inventory (no time zone)", raw.index[unknown], dtype=str)
    )
    known = raw[~unknown]
    interval = reporting_interval_minutes(known["NE_ID"], known["LOCAL_TIME"])
    end_utc = _to_utc(known["LOCAL_TIME"], zone[~unknown])
    unplaced = end_utc.isna()
    reasons.append(
        pd.Series(
            "LOCAL_TIME does not exist or is ambiguous in the site's time zone",
            known.index[unplaced],
            dtype=str,
        )
    )
    placed = known[~unplaced]
    ts = end_utc[~unplaced] - pd.Timedelta(minutes=interval)
    samples = pd.DataFrame({"cell_id": placed["NE_ID"], "ts": ts})
    for name in COUNTERS:
        samples[name] = placed[name].astype(float)
    distinct = samples.drop_duplicates(["cell_id", "ts"])
    rises = samples[["cell_id", "ts"]].merge(
        _counter_increases(distinct), on=["cell_id", "ts"], how="left"
    )
    rises.index = samples.index
    baseline = rises["seconds"].isna()
    reasons.append(
        pd.Series(
            "first sample of the cell: no earlier counter value to difference against",
            samples.index[baseline],
            dtype=str,
        )
    )
    seconds = rises["seconds"]
    tx = rises["PKT_TX_CUM"]
    canonical = pd.DataFrame(
        {
            "cell_id": placed["NE_ID"],
            "ts": ts,
            "interval_minutes": seconds / 60,
            "availability_pct": 100 * (1 - rises["UNAVAIL_S_CUM"] / seconds),
            "latency_ms": placed["RTT_AVG_US"].astype(float) / 1000,
            "packet_loss_pct": (100 * rises["PKT_LOST_CUM"] / tx).where(tx > 0),
            "throughput_mbps": rises["DL_KBYTES_CUM"] / (125 * seconds),
            "prb_util_pct": 100 * placed["PRB_USAGE_RATIO"],
            "connected_users": placed["CONN_UE_AVG"],
            "alarm_count": placed["ALARM_NUM"].astype(float),
            "received_at": pd.to_datetime(placed["RECV_EPOCH_MS"], unit="ms", utc=True),
            "vendor": "zenith",
        },
        index=placed.index,
    )
    return canonical, merge_reasons(*reasons)
