"""Feature windows on hand-made frames: values and the instants they become knowable."""

import numpy as np
import pandas as pd

from features.build import CustomerSources, cell_hourly, customer_daily, trailing, value_segment

UTC_DAY = pd.Timestamp("2026-01-01", tz="UTC")


def test_trailing_sums_include_the_current_step():
    assert trailing(np.array([[1.0, 2.0, 3.0, 4.0]]), 2).tolist() == [[1.0, 3.0, 5.0, 7.0]]


def test_value_segments_follow_revenue():
    segments = value_segment(pd.Series([10.0, 100.0, 500.0, 5_000.0, None]))
    assert segments.tolist() == ["low", "mid", "high", "top", None]


def _sources(**tables):
    empty = {
        "customers": pd.DataFrame(
            {
                "customer_id": ["a"],
                "segment": ["consumer"],
                "sla_tier": ["gold"],
                "plan": ["p"],
                "list_price": [50.0],
                "mrr": [60.0],
                "contract_type": ["one_year"],
                "contract_end": [pd.Timestamp("2026-03-02", tz="UTC")],
                "signup_date": [pd.Timestamp("2025-01-01", tz="UTC")],
                "tenure_months": [12.0],
                "region": ["r"],
                "cell_id": ["c"],
                "device_type": ["d"],
                "do_not_contact": [False],
            }
        ),
        "experience": pd.DataFrame(
            columns=[
                "customer_id",
                "date",
                "outage_minutes",
                "degraded_minutes",
                "latency_p95_ms",
                "failed_sessions",
            ]
        ),
        "usage": pd.DataFrame(
            columns=["customer_id", "date", "data_mb", "voice_minutes", "sms_count"]
        ),
        "tickets": pd.DataFrame(columns=["customer_id", "opened_at", "category", "is_complaint"]),
        "invoices": pd.DataFrame(
            columns=["customer_id", "issued_on", "due_on", "paid_on", "amount"]
        ),
        "credits": pd.DataFrame(columns=["customer_id", "issued_on", "amount"]),
    }
    return CustomerSources(**{**empty, **tables})


def test_a_day_is_stamped_when_it_ends_and_windows_roll():
    days = pd.date_range("2026-01-01", periods=10, tz="UTC")
    experience = pd.DataFrame(
        {
            "customer_id": "a", "date": days, "outage_minutes": [0, 0, 60, 0, 0, 0, 0, 0, 0, 30],
            "degraded_minutes": 0.0, "latency_p95_ms": 20.0, "failed_sessions": 1.0,
        }
    )  # fmt: skip
    rows = customer_daily(_sources(experience=experience), UTC_DAY)
    assert rows.event_timestamp.iloc[0] == UTC_DAY + pd.Timedelta(days=1)
    assert rows.outage_minutes_1d.tolist()[2] == 60
    assert rows.outage_minutes_7d.tolist() == [0, 0, 60, 60, 60, 60, 60, 60, 60, 30]
    assert rows.failed_sessions_30d.tolist()[-1] == 10
    third = rows.iloc[2]
    assert third.contract_months_left == round(
        (pd.Timestamp("2026-03-02") - pd.Timestamp("2026-01-03")).days / 30.4, 2
    )
    assert third.price_ratio == 1.2 and third.sla_rank == 2 and third.value_segment == "mid"


def test_invoices_become_late_the_day_after_their_due_date():
    days = pd.date_range("2026-01-01", periods=20, tz="UTC")
    usage = pd.DataFrame(
        {"customer_id": "a", "date": days, "data_mb": 1.0, "voice_minutes": 1.0, "sms_count": 0.0}
    )
    invoices = pd.DataFrame(
        {
            "customer_id": ["a", "a"],
            "issued_on": pd.to_datetime(["2026-01-01", "2026-01-02"], utc=True),
            "due_on": pd.to_datetime(["2026-01-05", "2026-01-06"], utc=True),
            "paid_on": pd.to_datetime(["2026-01-04", "2026-01-10"], utc=True),
            "amount": [10.0, 20.0],
        }
    )
    rows = customer_daily(_sources(usage=usage, invoices=invoices), UTC_DAY).set_index(days.date)
    late = rows.late_invoices_90d
    assert (
        late[pd.Timestamp("2026-01-06").date()] == 0
        and late[pd.Timestamp("2026-01-07").date()] == 1
    )
    unpaid = rows.unpaid_amount
    assert (
        unpaid[pd.Timestamp("2026-01-03").date()] == 30
        and unpaid[pd.Timestamp("2026-01-10").date()] == 0
    )


def test_a_plain_customer_file_gets_one_snapshot():
    rows = customer_daily(_sources(), UTC_DAY)
    assert len(rows) == 1 and rows.event_timestamp.iloc[0] == UTC_DAY
    assert rows.tickets_30d.iloc[0] == 0 and rows.days_since_ticket.iloc[0] == 365


def test_cell_hours_show_rising_congestion_as_a_trend():
    ts = pd.date_range("2026-01-01", periods=6 * 4, freq="15min", tz="UTC")
    telemetry = pd.DataFrame(
        {
            "cell_id": "c", "ts": ts, "interval_minutes": 15.0, "availability_pct": 100.0,
            "latency_ms": 20.0, "packet_loss_pct": 0.1, "throughput_mbps": 50.0,
            "prb_util_pct": np.repeat([10.0, 10.0, 10.0, 40.0, 40.0, 40.0], 4),
            "connected_users": 5.0, "alarm_count": 0.0,
        }
    )  # fmt: skip
    cells = pd.DataFrame(
        {
            "cell_id": ["c"],
            "capacity_mbps": [100.0],
            "baseline_latency_ms": [15.0],
            "technology": ["lte"],
            "vendor": ["aurora"],
        }
    )
    hours = cell_hourly(telemetry, cells)
    assert hours.event_timestamp.iloc[0] == ts[0] + pd.Timedelta(hours=1)
    assert hours.prb_trend_6h.iloc[-1] == 30.0
    assert np.isnan(hours.prb_trend_6h.iloc[2])
    assert hours.availability_24h.iloc[-1] == 100.0
