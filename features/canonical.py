"""The canonical tables of the offline store: one schema whatever vendor or file a row came from.

Every source — the simulator's raw world, a vendor's telemetry, a user's CSV through a column
mapping — is normalised into these schemas before validation. Columns a source cannot supply
are null; key columns never are.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from closedloop.arrow import UTC_MS, described


def _field(name: str, type_: pa.DataType, description: str, nullable: bool = True) -> pa.Field:
    """Canonical columns are nullable unless they are keys."""
    return described(name, type_, description, nullable)


@dataclass(frozen=True)
class CanonicalTable:
    name: str
    keys: tuple[str, ...]  # unique together; never null
    timestamp: str | None  # the event time column, if the table has one
    schema: pa.Schema

    @property
    def columns(self) -> list[str]:
        return self.schema.names


CELLS = CanonicalTable(
    "cells",
    ("cell_id",),
    None,
    pa.schema(
        [
            _field("cell_id", pa.string(), "cell key", nullable=False),
            _field("region", pa.string(), "region the cell serves"),
            _field("timezone", pa.string(), "IANA time zone of the site"),
            _field("technology", pa.string(), "lte or nr"),
            _field("vendor", pa.string(), "radio vendor"),
            _field("capacity_mbps", pa.float64(), "downlink capacity, Mbit/s"),
            _field("max_users", pa.float64(), "connected users at full load"),
            _field("baseline_latency_ms", pa.float64(), "round-trip latency when idle, ms"),
        ]
    ),
)

CELL_TELEMETRY = CanonicalTable(
    "cell_telemetry",
    ("cell_id", "ts"),
    "ts",
    pa.schema(
        [
            _field("cell_id", pa.string(), "cell key", nullable=False),
            _field("ts", UTC_MS, "start of the reporting interval, UTC", nullable=False),
            _field("interval_minutes", pa.float64(), "length of the interval the row covers"),
            _field("availability_pct", pa.float64(), "share of the interval in service, %"),
            _field("latency_ms", pa.float64(), "mean round-trip latency, ms"),
            _field("packet_loss_pct", pa.float64(), "packet loss, %"),
            _field("throughput_mbps", pa.float64(), "carried downlink throughput, Mbit/s"),
            _field("prb_util_pct", pa.float64(), "PRB utilisation, %"),
            _field("connected_users", pa.float64(), "mean connected users"),
            _field("alarm_count", pa.float64(), "alarms raised in the interval"),
            _field("received_at", UTC_MS, "arrival at the collector, UTC"),
            _field("vendor", pa.string(), "dialect the row arrived in"),
        ]
    ),
)

CUSTOMERS = CanonicalTable(
    "customers",
    ("customer_id",),
    None,
    pa.schema(
        [
            _field("customer_id", pa.string(), "customer key", nullable=False),
            _field("segment", pa.string(), "consumer, smb or enterprise"),
            _field("sla_tier", pa.string(), "bronze, silver, gold or platinum"),
            _field("plan", pa.string(), "tariff plan"),
            _field("list_price", pa.float64(), "plan list price, USD per month"),
            _field("mrr", pa.float64(), "monthly recurring revenue, USD"),
            _field("total_charges", pa.float64(), "lifetime billed, USD"),
            _field("contract_type", pa.string(), "month_to_month, one_year or two_year"),
            _field("contract_end", pa.date32(), "end of the commitment"),
            _field("signup_date", pa.date32(), "first day as a customer"),
            _field("tenure_months", pa.float64(), "months as a customer when recorded"),
            _field("region", pa.string(), "region of the service address"),
            _field("cell_id", pa.string(), "serving cell"),
            _field("device_type", pa.string(), "main device"),
            _field("do_not_contact", pa.bool_(), "opted out of proactive contact"),
            _field("new_mrr", pa.float64(), "announced new monthly price, USD"),
            _field("new_mrr_from", pa.date32(), "first day of the new price"),
        ]
    ),
)

EXPERIENCE = CanonicalTable(
    "experience",
    ("customer_id", "date"),
    "date",
    pa.schema(
        [
            _field("customer_id", pa.string(), "customer key", nullable=False),
            _field("date", pa.date32(), "UTC day", nullable=False),
            _field("outage_minutes", pa.float64(), "minutes without service"),
            _field("degraded_minutes", pa.float64(), "minutes with poor latency or loss"),
            _field("latency_p95_ms", pa.float64(), "95th percentile latency, ms"),
            _field("failed_sessions", pa.float64(), "dropped calls and failed sessions"),
        ]
    ),
)

USAGE = CanonicalTable(
    "usage",
    ("customer_id", "date"),
    "date",
    pa.schema(
        [
            _field("customer_id", pa.string(), "customer key", nullable=False),
            _field("date", pa.date32(), "UTC day", nullable=False),
            _field("data_mb", pa.float64(), "mobile data, MB"),
            _field("voice_minutes", pa.float64(), "voice minutes"),
            _field("sms_count", pa.float64(), "messages sent"),
        ]
    ),
)

TICKETS = CanonicalTable(
    "tickets",
    ("ticket_id",),
    "opened_at",
    pa.schema(
        [
            _field("ticket_id", pa.string(), "ticket key", nullable=False),
            _field("customer_id", pa.string(), "customer key", nullable=False),
            _field("opened_at", UTC_MS, "when the customer got in touch", nullable=False),
            _field("resolved_at", UTC_MS, "when it was closed"),
            _field("category", pa.string(), "network, billing, device or other"),
            _field("is_complaint", pa.bool_(), "formal complaint"),
        ]
    ),
)

INVOICES = CanonicalTable(
    "invoices",
    ("invoice_id",),
    "issued_on",
    pa.schema(
        [
            _field("invoice_id", pa.string(), "invoice key", nullable=False),
            _field("customer_id", pa.string(), "customer key", nullable=False),
            _field("issued_on", pa.date32(), "issue date", nullable=False),
            _field("due_on", pa.date32(), "payment due date"),
            _field("amount", pa.float64(), "amount billed, USD"),
            _field("paid_on", pa.date32(), "payment date; null if unpaid"),
        ]
    ),
)

CREDITS = CanonicalTable(
    "credits",
    ("credit_id",),
    "issued_on",
    pa.schema(
        [
            _field("credit_id", pa.string(), "credit key", nullable=False),
            _field("customer_id", pa.string(), "customer key", nullable=False),
            _field("issued_on", pa.date32(), "issue date", nullable=False),
            _field("amount", pa.float64(), "credit, USD"),
            _field("reason", pa.string(), "why it was issued"),
        ]
    ),
)

CHURN_LABELS = CanonicalTable(
    "churn_labels",
    ("customer_id",),
    None,
    pa.schema(
        [
            _field("customer_id", pa.string(), "customer key", nullable=False),
            _field("churned", pa.bool_(), "left", nullable=False),
            _field("churn_date", pa.date32(), "day of leaving, if known"),
            _field("category", pa.string(), "why the customer left: a multi-class target"),
        ]
    ),
)

CELL_FAULT_LABELS = CanonicalTable(
    "cell_fault_labels",
    ("cell_id", "start_at"),
    "start_at",
    pa.schema(
        [
            _field("cell_id", pa.string(), "affected cell", nullable=False),
            _field("start_at", UTC_MS, "fault or anomaly start", nullable=False),
            _field("end_at", UTC_MS, "fault or anomaly end"),
            _field("kind", pa.string(), "fault kind, or 'anomaly' for labelled KPI samples"),
            _field("is_outage", pa.bool_(), "cell out of service (else degraded)"),
        ]
    ),
)

TABLES: dict[str, CanonicalTable] = {
    t.name: t
    for t in (
        CELLS,
        CELL_TELEMETRY,
        CUSTOMERS,
        EXPERIENCE,
        USAGE,
        TICKETS,
        INVOICES,
        CREDITS,
        CHURN_LABELS,
        CELL_FAULT_LABELS,
    )
}

QUARANTINE = pa.schema(
    [
        _field("table", pa.string(), "canonical table the row was meant for", nullable=False),
        _field("source", pa.string(), "file the row came from", nullable=False),
        _field("source_row", pa.int64(), "0-based row (or line) in that file", nullable=False),
        _field("reasons", pa.string(), "every check it failed, '; '-separated", nullable=False),
        _field("record", pa.string(), "the row as received, JSON", nullable=False),
    ]
)
