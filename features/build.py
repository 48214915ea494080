"""Feature tables from the offline store: windows over customer days and cell hours (pure).

Every feature row carries the instant it became knowable as ``event_timestamp``: the end of the
customer day or cell hour it summarises, never earlier. That is what makes Feast's
point-in-time joins correct: a label at time t only ever sees rows stamped at or before t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DAY = pd.Timedelta(days=1)
HOUR = pd.Timedelta(hours=1)
MONTH_DAYS = 30.4
BUILT_FROM = {  # the entity tables' columns the built-in features are computed from
    "customers": (
        "customer_id", "segment", "sla_tier", "list_price", "mrr", "contract_type",
        "contract_end", "signup_date", "tenure_months", "region", "device_type",
        "do_not_contact",
    ),
    "cells": ("cell_id", "technology", "vendor", "capacity_mbps", "baseline_latency_ms"),
}  # fmt: skip
SLA_RANK = {"bronze": 0, "silver": 1, "gold": 2, "platinum": 3}
VALUE_SEGMENTS = ((40.0, "low"), (150.0, "mid"), (1_000.0, "high"), (np.inf, "top"))


def trailing(values: np.ndarray, window: int) -> np.ndarray:
    """Sum over the trailing ``window`` steps, the current one included, along axis 1."""
    total = np.cumsum(values, axis=1, dtype=np.float64)
    total[:, window:] -= total[:, :-window].copy()
    return total


def _dense(rows, steps, values, shape) -> np.ndarray:
    out = np.zeros(shape)
    np.add.at(out, (rows, steps), values)
    return out


def value_segment(mrr: pd.Series) -> pd.Series:
    bounds = [b for b, _ in VALUE_SEGMENTS]
    names = np.array([n for _, n in VALUE_SEGMENTS], dtype=object)
    segment = pd.Series(names[np.searchsorted(bounds, mrr.fillna(0).to_numpy(), side="right")])
    return segment.where(mrr.notna().to_numpy(), None).set_axis(mrr.index)


@dataclass(frozen=True)
class Span:
    """The steps (days or hours) a feature table covers: ``first`` and the ``steps`` after it.
    A table built a group of entities at a time is given the whole table's span, so every
    group's windows line up as if built at once."""

    first: pd.Timestamp
    steps: int


@dataclass(frozen=True)
class CustomerSources:
    """The offline tables customer features are computed from."""

    customers: pd.DataFrame
    experience: pd.DataFrame
    usage: pd.DataFrame
    tickets: pd.DataFrame
    invoices: pd.DataFrame
    credits: pd.DataFrame


def _days(series: pd.Series) -> pd.Series:
    """Timestamps or dates as tz-naive midnights."""
    stamps = pd.to_datetime(series)
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return stamps.dt.normalize()


def day_span(dates: pd.Series) -> Span | None:
    """The days from the first to the last of ``dates``; None if there are none."""
    days = _days(dates.dropna())
    if days.empty:
        return None
    return Span(days.min(), int((days.max() - days.min()) / DAY) + 1)


def customer_daily(
    sources: CustomerSources, as_of: pd.Timestamp, span: Span | None = None
) -> pd.DataFrame:
    """One row per customer and active day (a day with experience or usage), else one snapshot
    per customer at ``as_of`` when the source has no daily data (a plain customer file).
    ``span`` is the days of the whole table (default: the days of these sources)."""
    customers = sources.customers.drop_duplicates("customer_id").set_index("customer_id")
    keys = customers.index
    daily_keys = [t[["customer_id", "date"]] for t in (sources.experience, sources.usage) if len(t)]
    daily = pd.concat(daily_keys) if daily_keys else pd.DataFrame(columns=["customer_id", "date"])
    span = span or day_span(daily["date"])
    if span is None:
        first = _days(pd.Series([as_of])).iloc[0] - DAY
        n_days = 1
        active = np.ones((len(keys), 1), dtype=bool)
    else:
        dates = _days(daily["date"]) if len(daily) else pd.Series([], dtype="datetime64[ns]")
        first, n_days = span.first, span.steps
        rows = keys.get_indexer(daily["customer_id"])
        active = np.zeros((len(keys), n_days), dtype=bool)
        active[rows[rows >= 0], ((dates - first) / DAY).astype(int).to_numpy()[rows >= 0]] = True
    shape = (len(keys), n_days)

    def per_day(frame: pd.DataFrame, day_column: str, values) -> np.ndarray:
        day = ((_days(frame[day_column]) - first) / DAY).to_numpy()
        rows = keys.get_indexer(frame["customer_id"])
        inside = (rows >= 0) & (day >= 0) & (day < n_days)
        weights = np.broadcast_to(np.asarray(values, dtype=float), (len(frame),))[inside]
        return _dense(rows[inside], day[inside].astype(int), np.nan_to_num(weights), shape)

    experience, usage, tickets = sources.experience, sources.usage, sources.tickets
    outage = per_day(experience, "date", experience["outage_minutes"])
    degraded = per_day(experience, "date", experience["degraded_minutes"])
    failed = per_day(experience, "date", experience["failed_sessions"])
    latency_sum = per_day(experience, "date", experience["latency_p95_ms"])
    latency_days = per_day(experience, "date", experience["latency_p95_ms"].notna())
    data = per_day(usage, "date", usage["data_mb"])
    voice = per_day(usage, "date", usage["voice_minutes"])
    opened = per_day(tickets, "opened_at", 1.0)
    network_tickets = per_day(tickets, "opened_at", tickets["category"].eq("network"))
    complaints = per_day(tickets, "opened_at", tickets["is_complaint"].fillna(False))
    invoices = sources.invoices
    paid_on_time = _days(invoices["paid_on"]) <= _days(invoices["due_on"])
    late = invoices[~paid_on_time.fillna(False)].assign(late_from=_days(invoices["due_on"]) + DAY)
    became_late = per_day(late, "late_from", 1.0)
    issued_amount = per_day(invoices, "issued_on", invoices["amount"])
    paid = invoices[invoices["paid_on"].notna()]
    paid_amount = per_day(paid, "paid_on", paid["amount"])
    credits = sources.credits
    credit_amount = per_day(credits, "issued_on", credits["amount"])
    credit_count = per_day(credits, "issued_on", 1.0)

    with np.errstate(invalid="ignore", divide="ignore"):
        features = {
            "outage_minutes_1d": outage,
            "outage_minutes_7d": trailing(outage, 7),
            "outage_minutes_30d": trailing(outage, 30),
            "degraded_minutes_7d": trailing(degraded, 7),
            "degraded_minutes_30d": trailing(degraded, 30),
            "latency_p95_ms_1d": np.where(latency_days > 0, latency_sum, np.nan),
            "latency_p95_ms_7d": trailing(latency_sum, 7) / trailing(latency_days, 7),
            "failed_sessions_1d": failed,
            "failed_sessions_7d": trailing(failed, 7),
            "failed_sessions_30d": trailing(failed, 30),
            "data_mb_7d": trailing(data, 7),
            "data_mb_30d": trailing(data, 30),
            "usage_trend": (trailing(data, 7) / 7) / (trailing(data, 30) / 30),
            "voice_minutes_30d": trailing(voice, 30),
            "tickets_30d": trailing(opened, 30),
            "network_tickets_30d": trailing(network_tickets, 30),
            "complaints_30d": trailing(complaints, 30),
            "days_since_ticket": _days_since(opened),
            "late_invoices_90d": trailing(became_late, 90),
            "unpaid_amount": np.cumsum(issued_amount - paid_amount, axis=1).round(2),
            "credit_amount_30d": trailing(credit_amount, 30),
            "credits_90d": trailing(credit_count, 90),
        }
    rows, days = np.nonzero(active)
    out = pd.DataFrame({name: values[rows, days] for name, values in features.items()})
    day = first + pd.to_timedelta(days, unit="D")
    out.insert(0, "customer_id", keys[rows])
    out.insert(1, "event_timestamp", (day + DAY).tz_localize("UTC"))
    profile = customers.iloc[rows].reset_index(drop=True)
    return pd.concat([out, _profile(profile, pd.Series(day))], axis=1)


def _days_since(events: np.ndarray, cap: int = 365) -> np.ndarray:
    """Days since the last day with an event, counting the current day as 0; ``cap`` if none."""
    steps = np.arange(events.shape[1])[None, :]
    last = np.maximum.accumulate(np.where(events > 0, steps, -(10**9)), axis=1)
    return np.minimum(steps - last, cap).astype(float)


def _profile(customers: pd.DataFrame, day: pd.Series) -> pd.DataFrame:
    """Profile and revenue features of each row's customer as of its day."""
    signup = _days(customers["signup_date"])
    contract_end = _days(customers["contract_end"])
    recorded_tenure = customers["tenure_months"].astype(float)
    tenure = ((day - signup) / DAY / MONTH_DAYS).where(signup.notna(), recorded_tenure)
    months_left = ((contract_end - day) / DAY / MONTH_DAYS).clip(lower=0)
    month_to_month = customers["contract_type"].eq("month_to_month") | (months_left == 0)
    months_left = months_left.where(contract_end.notna(), np.where(month_to_month, 0.0, np.nan))
    mrr = customers["mrr"].astype(float)
    if "new_mrr" in customers and "new_mrr_from" in customers:
        new_price = day.to_numpy() >= _days(customers["new_mrr_from"]).to_numpy()
        mrr = mrr.where(
            ~new_price | customers["new_mrr"].isna(), customers["new_mrr"].astype(float)
        )
    return pd.DataFrame(
        {
            "mrr": mrr,
            "price_ratio": mrr / customers["list_price"].astype(float),
            "tenure_months": tenure.round(2),
            "contract_months_left": months_left.round(2),
            "month_to_month": month_to_month.astype(float),
            "sla_rank": customers["sla_tier"].map(SLA_RANK).astype(float),
            "segment": customers["segment"],
            "sla_tier": customers["sla_tier"],
            "value_segment": value_segment(mrr),
            "contract_type": customers["contract_type"],
            "device_type": customers["device_type"],
            "region": customers["region"],
            "do_not_contact": customers["do_not_contact"].astype(float),
        }
    ).reset_index(drop=True)


def hour_span(stamps: pd.Series) -> Span | None:
    """The hours from the first to the last of ``stamps``; None if there are none."""
    hours = pd.to_datetime(stamps.dropna(), utc=True).dt.floor("h")
    if hours.empty:
        return None
    return Span(hours.min(), int((hours.max() - hours.min()) / HOUR) + 1)


def cell_hourly(
    telemetry: pd.DataFrame,
    cells: pd.DataFrame,
    span: Span | None = None,
    interval_minutes: float | None = None,
) -> pd.DataFrame:
    """One row per cell and hour of the telemetry's span: health and the trends that lead faults.

    ``span`` (the hours of the whole table) and ``interval_minutes`` (the median reporting
    interval of the cells' telemetry) default to those of ``telemetry``."""
    inventory = cells.drop_duplicates("cell_id").set_index("cell_id")
    keys = inventory.index
    span = span or hour_span(telemetry["ts"])
    if span is None:
        return pd.DataFrame(columns=["cell_id", "event_timestamp"])
    hours = pd.to_datetime(telemetry["ts"], utc=True).dt.floor("h")
    first, n_hours = span.first, span.steps
    rows = keys.get_indexer(telemetry["cell_id"])
    inside = rows >= 0
    rows, hour = rows[inside], ((hours - first) / HOUR).to_numpy().astype(int)[inside]
    shape = (len(keys), n_hours)
    frame = telemetry[inside]

    def total(values) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        return _dense(rows, hour, np.nan_to_num(values), shape)

    def present(column: str) -> np.ndarray:
        return total(frame[column].notna())

    interval = frame["interval_minutes"].fillna(15.0)
    down_minutes = total((100 - frame["availability_pct"]) / 100 * interval)
    covered_minutes = total(interval.where(frame["availability_pct"].notna(), 0))

    with np.errstate(invalid="ignore", divide="ignore"):

        def mean(column: str, window: int = 1) -> np.ndarray:
            return trailing(total(frame[column]), window) / trailing(present(column), window)

        def trend(column: str) -> np.ndarray:
            recent, earlier = mean(column, 3), np.roll(mean(column, 3), 3, axis=1)
            earlier[:, :3] = np.nan
            return recent - earlier

        expected_per_hour = 60 / (interval_minutes or interval.median())
        features = {
            "availability_1h": 100 * (1 - down_minutes / covered_minutes),
            "availability_24h": 100
            * (1 - trailing(down_minutes, 24) / trailing(covered_minutes, 24)),
            "down_minutes_24h": trailing(down_minutes, 24),
            "latency_ms_1h": mean("latency_ms"),
            "latency_ms_24h": mean("latency_ms", 24),
            "latency_trend_6h": trend("latency_ms"),
            "packet_loss_1h": mean("packet_loss_pct"),
            "packet_loss_6h": mean("packet_loss_pct", 6),
            "loss_trend_6h": trend("packet_loss_pct"),
            "prb_util_1h": mean("prb_util_pct"),
            "prb_util_6h": mean("prb_util_pct", 6),
            "prb_trend_6h": trend("prb_util_pct"),
            "throughput_1h": mean("throughput_mbps"),
            "users_1h": mean("connected_users"),
            "alarms_1h": total(frame["alarm_count"]),
            "alarms_24h": trailing(total(frame["alarm_count"]), 24),
            "missing_reports_24h": np.maximum(
                0, 24 * expected_per_hour - trailing(total(np.ones(len(frame))), 24)
            ),
        }
    cell, step = np.indices(shape).reshape(2, -1)
    out = pd.DataFrame({name: values[cell, step] for name, values in features.items()})
    out.insert(0, "cell_id", keys[cell])
    out.insert(1, "event_timestamp", first + pd.to_timedelta(step + 1, unit="h"))
    static = inventory.iloc[cell].reset_index(drop=True)
    out["capacity_mbps"] = static["capacity_mbps"].astype(float)
    out["baseline_latency_ms"] = static["baseline_latency_ms"].astype(float)
    out["technology"] = static["technology"]
    out["vendor"] = static["vendor"]
    return out
