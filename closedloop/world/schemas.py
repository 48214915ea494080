"""Documented Arrow schemas of every table the world writes.

Each field carries its description in the field metadata, so the Parquet files document
themselves and ``closedloop world schema`` prints the same text as this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from closedloop.arrow import UTC_MS, described

_field = described


@dataclass(frozen=True)
class TableSpec:
    """A table of the world: where it is written, what it holds and its schema."""

    name: str
    path: str  # relative to the world folder; a folder for partitioned tables
    description: str
    schema: pa.Schema


def build_table(spec: TableSpec, columns: dict[str, object]) -> pa.Table:
    """A table of ``spec``'s schema from numpy arrays, sequences or Arrow arrays by field name."""
    arrays = [
        values if isinstance(values := columns[f.name], pa.Array) else pa.array(values, f.type)
        for f in spec.schema
    ]
    return pa.Table.from_arrays(arrays, schema=spec.schema)


def id_array(ids: np.ndarray, index: np.ndarray) -> pa.Array:
    """``ids[index]`` as an Arrow string array, without building a Python string per row."""
    dictionary = pa.array(ids, type=pa.string())
    indices = pa.array(index.astype(np.int32))
    return pa.DictionaryArray.from_arrays(indices, dictionary).dictionary_decode()


def masked(values: np.ndarray, type_: pa.DataType, missing: np.ndarray) -> pa.Array:
    """Arrow array of ``values`` with nulls where ``missing``."""
    return pa.array(values, type_, mask=missing)


CUSTOMERS = TableSpec(
    "customers",
    "inventory/customers.parquet",
    "One row per customer as known at the world's start, announced price changes included.",
    pa.schema(
        [
            _field("customer_id", pa.string(), "customer key, cus_NNNNNNN"),
            _field("segment", pa.string(), "consumer, smb or enterprise"),
            _field("sla_tier", pa.string(), "bronze, silver, gold or platinum"),
            _field("plan", pa.string(), "tariff plan name"),
            _field("list_price", pa.float64(), "the plan's list price, USD per month"),
            _field("mrr", pa.float64(), "monthly recurring revenue actually billed, USD"),
            _field("contract_type", pa.string(), "month_to_month, one_year or two_year"),
            _field("contract_end", pa.date32(), "end of the commitment; null if none", True),
            _field("signup_date", pa.date32(), "first day as a customer"),
            _field("tenure_months", pa.int32(), "whole months as a customer at the start"),
            _field("region", pa.string(), "region of the service address"),
            _field("cell_id", pa.string(), "serving cell"),
            _field("device_type", pa.string(), "main device on the account"),
            _field("do_not_contact", pa.bool_(), "customer opted out of proactive contact"),
            _field("bill_cycle_day", pa.int8(), "day of month invoices are issued"),
            _field(
                "new_mrr", pa.float64(), "announced new price, USD per month; null if none", True
            ),
            _field("new_mrr_from", pa.date32(), "first day of the new price; null if none", True),
        ]
    ),
)

CELLS = TableSpec(
    "cells",
    "inventory/cells.parquet",
    "One row per radio cell.",
    pa.schema(
        [
            _field("cell_id", pa.string(), "cell key, cell_NNNNN"),
            _field("region", pa.string(), "region the cell serves"),
            _field("timezone", pa.string(), "IANA time zone of the site"),
            _field("technology", pa.string(), "lte or nr"),
            _field("vendor", pa.string(), "radio vendor: aurora or zenith"),
            _field("capacity_mbps", pa.float64(), "downlink capacity"),
            _field("max_users", pa.int32(), "connected users at full load"),
            _field("baseline_latency_ms", pa.float64(), "round-trip latency when idle"),
        ]
    ),
)

AURORA_TELEMETRY = TableSpec(
    "telemetry_aurora",
    "telemetry/aurora",
    "Raw KPIs from aurora's element manager: gauges, UTC interval start, latency in ms. "
    "One file per UTC arrival day; late, duplicate, missing and out-of-range records included.",
    pa.schema(
        [
            _field("cell_id", pa.string(), "cell key"),
            _field("ts_utc", UTC_MS, "start of the reporting interval, UTC"),
            _field("availability_pct", pa.float64(), "share of the interval in service, %"),
            _field("latency_ms", pa.float64(), "mean round-trip latency, ms; null when down", True),
            _field("pkt_loss_pct", pa.float64(), "packet loss, %"),
            _field("dl_throughput_mbps", pa.float64(), "carried downlink throughput, Mbit/s"),
            _field("prb_util_pct", pa.float64(), "physical resource block utilisation, %"),
            _field("rrc_connected_users", pa.int32(), "mean RRC-connected users"),
            _field("alarm_count", pa.int32(), "alarms raised in the interval"),
            _field("received_at", UTC_MS, "when the record reached the collector, UTC"),
        ]
    ),
)

ZENITH_TELEMETRY = TableSpec(
    "telemetry_zenith",
    "telemetry/zenith",
    "Raw KPIs from zenith's OSS export: cumulative counters, interval END in the site's local "
    "time (no zone), latency in microseconds, PRB as a 0-1 ratio. One file per UTC arrival day.",
    pa.schema(
        [
            _field("NE_ID", pa.string(), "network element (cell) key"),
            _field("LOCAL_TIME", pa.timestamp("ms"), "END of the interval, site local time"),
            _field("RTT_AVG_US", pa.int64(), "mean round-trip time, µs; null when down", True),
            _field("UNAVAIL_S_CUM", pa.int64(), "cumulative seconds out of service"),
            _field("PKT_TX_CUM", pa.int64(), "cumulative packets sent"),
            _field("PKT_LOST_CUM", pa.int64(), "cumulative packets lost"),
            _field("DL_KBYTES_CUM", pa.int64(), "cumulative downlink kilobytes"),
            _field("PRB_USAGE_RATIO", pa.float64(), "PRB utilisation, 0-1"),
            _field("CONN_UE_AVG", pa.float64(), "mean connected user equipment"),
            _field("ALARM_NUM", pa.int32(), "alarms raised in the interval"),
            _field("RECV_EPOCH_MS", pa.int64(), "arrival at the collector, Unix ms"),
        ]
    ),
)

EXPERIENCE = TableSpec(
    "experience",
    "customers/experience.parquet",
    "Daily network experience per customer (customer experience management probe).",
    pa.schema(
        [
            _field("customer_id", pa.string(), "customer key"),
            _field("date", pa.date32(), "UTC day"),
            _field("outage_minutes", pa.float32(), "minutes without service"),
            _field("degraded_minutes", pa.float32(), "minutes with poor latency or loss"),
            _field("latency_p95_ms", pa.float32(), "95th percentile latency experienced, ms"),
            _field("failed_sessions", pa.int16(), "dropped calls and failed data sessions"),
        ]
    ),
)

USAGE = TableSpec(
    "usage",
    "customers/usage.parquet",
    "Daily usage per customer from mediation records.",
    pa.schema(
        [
            _field("customer_id", pa.string(), "customer key"),
            _field("date", pa.date32(), "UTC day"),
            _field("data_mb", pa.float32(), "mobile data, MB"),
            _field("voice_minutes", pa.float32(), "voice minutes"),
            _field("sms_count", pa.int16(), "messages sent"),
        ]
    ),
)

TICKETS = TableSpec(
    "tickets",
    "customers/tickets.parquet",
    "Support contacts and complaints.",
    pa.schema(
        [
            _field("ticket_id", pa.string(), "ticket key"),
            _field("customer_id", pa.string(), "customer key"),
            _field("opened_at", UTC_MS, "when the customer got in touch"),
            _field("resolved_at", UTC_MS, "when it was closed; null if still open", True),
            _field("category", pa.string(), "network, billing, device or other"),
            _field("channel", pa.string(), "call, app, store or email"),
            _field("is_complaint", pa.bool_(), "formal complaint"),
        ]
    ),
)

INVOICES = TableSpec(
    "invoices",
    "billing/invoices.parquet",
    "Monthly invoices and their payment.",
    pa.schema(
        [
            _field("invoice_id", pa.string(), "invoice key"),
            _field("customer_id", pa.string(), "customer key"),
            _field("issued_on", pa.date32(), "issue date"),
            _field("due_on", pa.date32(), "payment due date"),
            _field("amount", pa.float64(), "amount billed, USD"),
            _field("paid_on", pa.date32(), "payment date; null if unpaid", True),
        ]
    ),
)

CREDITS = TableSpec(
    "credits",
    "billing/credits.parquet",
    "Goodwill credits issued by the operator's current, manual process.",
    pa.schema(
        [
            _field("credit_id", pa.string(), "credit key"),
            _field("customer_id", pa.string(), "customer key"),
            _field("issued_on", pa.date32(), "issue date"),
            _field("amount", pa.float64(), "credit, USD"),
            _field("reason", pa.string(), "why it was issued"),
        ]
    ),
)

CHURN = TableSpec(
    "churn",
    "labels/churn.parquet",
    "Churn outcome per customer within the world's window (label).",
    pa.schema(
        [
            _field("customer_id", pa.string(), "customer key"),
            _field("churned", pa.bool_(), "left within the window"),
            _field("churn_date", pa.date32(), "day of leaving; null if stayed", True),
        ]
    ),
)

INCIDENTS = TableSpec(
    "incidents",
    "labels/incidents.parquet",
    "Ground truth of injected faults, one row per affected cell (label).",
    pa.schema(
        [
            _field("incident_id", pa.string(), "incident key, shared by its cells"),
            _field("kind", pa.string(), "power_failure, backhaul_cut, hardware_failure, ..."),
            _field("is_outage", pa.bool_(), "cells out of service (else degraded)"),
            _field("cell_id", pa.string(), "affected cell"),
            _field("start_at", UTC_MS, "fault start"),
            _field("end_at", UTC_MS, "fault end"),
            _field("lead_start_at", UTC_MS, "start of leading signals; null if none", True),
        ]
    ),
)

TRAITS = TableSpec(
    "traits",
    "truth/customer_traits.parquet",
    "Simulator-only truth: latent customer traits and the causal effect of each action, as the "
    "hazard ratio it applies to churn for 30 days. Never a feature; used to judge policies.",
    pa.schema(
        [
            _field("customer_id", pa.string(), "customer key"),
            _field("price_sensitivity", pa.float32(), "0-1, reacts to price and competitors"),
            _field("network_sensitivity", pa.float32(), "0-1, reacts to outages and latency"),
            _field("financial_stress", pa.float32(), "0-1, pays late and leaves"),
            _field("hr_credit", pa.float32(), "churn hazard ratio after a bill credit"),
            _field("hr_message", pa.float32(), "after a proactive message (>1 annoys)"),
            _field("hr_offer", pa.float32(), "after a retention offer"),
            _field("hr_priority_repair", pa.float32(), "after priority repair of a fault"),
        ]
    ),
)

MARKET = TableSpec(
    "market",
    "truth/market.parquet",
    "Simulator-only truth: competitor pressure per region and day (unobserved by operators).",
    pa.schema(
        [
            _field("region", pa.string(), "region"),
            _field("date", pa.date32(), "UTC day"),
            _field("competitor_pressure", pa.float32(), "0-1"),
        ]
    ),
)

TABLES: tuple[TableSpec, ...] = (
    CUSTOMERS,
    CELLS,
    AURORA_TELEMETRY,
    ZENITH_TELEMETRY,
    EXPERIENCE,
    USAGE,
    TICKETS,
    INVOICES,
    CREDITS,
    CHURN,
    INCIDENTS,
    TRAITS,
    MARKET,
)
TELEMETRY_BY_VENDOR = {"aurora": AURORA_TELEMETRY, "zenith": ZENITH_TELEMETRY}
EVENTS_PATH = "events/network_events.jsonl"
MANIFEST_PATH = "world.json"
