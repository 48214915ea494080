"""Turn the simulation's arrays into the documented Arrow tables of :mod:`schemas`.

Rows of customers who have left stop on their churn day: a departed customer has no usage,
experience, tickets, invoices or credits afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from closedloop.world import catalog, schemas
from closedloop.world.churn import ActionEffects, Churn
from closedloop.world.config import WorldConfig
from closedloop.world.experience import (
    CHANNELS,
    PAYMENT_TERMS_DAYS,
    TICKET_CATEGORIES,
    Credits,
    Experience,
    Invoices,
    Tickets,
    Usage,
)
from closedloop.world.inventory import Cells, Customers, price_changed
from closedloop.world.network import Incidents
from closedloop.world.schemas import build_table, id_array, masked

MS_PER_DAY = 86_400_000
REGION_NAMES = tuple(r.name for r in catalog.REGIONS)


def _names(options: tuple[str, ...], index: np.ndarray) -> pa.Array:
    return id_array(np.array(options, dtype=object), index)


def _sequence_ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}_{i:08d}" for i in range(1, count + 1)]


@dataclass(frozen=True)
class Tabulator:
    """Builds each table of one world; ``active`` is (customers, days), True while a customer."""

    config: WorldConfig
    cells: Cells
    customers: Customers
    active: np.ndarray

    @property
    def start_ms(self) -> int:
        return int(np.datetime64(self.config.start, "ms").astype(np.int64))

    def dates(self, day: np.ndarray) -> np.ndarray:
        """Day indices as Arrow date32 values (days since 1970-01-01)."""
        return (np.datetime64(self.config.start, "D").astype(np.int64) + day).astype(np.int32)

    def instants(self, minutes: np.ndarray) -> np.ndarray:
        """Minutes from the world's start as Unix milliseconds."""
        return self.start_ms + np.nan_to_num(minutes * 60_000).astype(np.int64)

    def customer_ids(self, index: np.ndarray) -> pa.Array:
        return id_array(self.customers.ids, index)

    def customer_table(self) -> pa.Table:
        c = self.customers
        no_term = c.contract_end_day < 0
        changed = price_changed(self.config, c)
        change = self.config.drift.price
        factor, day = (change.factor, change.day) if change else (1.0, 0)
        return build_table(
            schemas.CUSTOMERS,
            {
                "customer_id": c.ids,
                "segment": _names(catalog.SEGMENTS, c.segment),
                "sla_tier": _names(catalog.SLA_TIERS, c.sla),
                "plan": _names(tuple(p.name for p in catalog.PLANS), c.plan),
                "list_price": c.list_price,
                "mrr": c.mrr,
                "contract_type": _names(catalog.CONTRACTS, c.contract),
                "contract_end": masked(self.dates(c.contract_end_day), pa.date32(), no_term),
                "signup_date": self.dates(-c.tenure_days),
                "tenure_months": (c.tenure_days / 30.4).astype(np.int32),
                "region": _names(REGION_NAMES, c.region),
                "cell_id": id_array(self.cells.ids, c.cell),
                "device_type": _names(catalog.DEVICES, c.device),
                "do_not_contact": c.do_not_contact,
                "bill_cycle_day": c.bill_cycle_day,
                "new_mrr": masked(c.mrr * factor, pa.float64(), ~changed),
                "new_mrr_from": masked(self.dates(np.full(len(c.ids), day)), pa.date32(), ~changed),
            },
        )

    def cell_table(self) -> pa.Table:
        cells = self.cells
        return build_table(
            schemas.CELLS,
            {
                "cell_id": cells.ids,
                "region": _names(REGION_NAMES, cells.region),
                "timezone": _names(tuple(r.timezone for r in catalog.REGIONS), cells.region),
                "technology": _names(catalog.TECHNOLOGIES, cells.technology),
                "vendor": _names(catalog.VENDORS, cells.vendor),
                "capacity_mbps": cells.capacity_mbps,
                "max_users": cells.max_users,
                "baseline_latency_ms": cells.baseline_latency_ms,
            },
        )

    def daily_tables(self, experience: Experience, usage: Usage) -> dict[str, pa.Table]:
        customer, day = np.nonzero(self.active)
        keys = {"customer_id": self.customer_ids(customer), "date": self.dates(day)}
        at = (customer, day)
        return {
            "experience": build_table(
                schemas.EXPERIENCE,
                {
                    **keys,
                    "outage_minutes": experience.outage_minutes[at],
                    "degraded_minutes": experience.degraded_minutes[at],
                    "latency_p95_ms": experience.latency_p95_ms[at],
                    "failed_sessions": experience.failed_sessions[at],
                },
            ),
            "usage": build_table(
                schemas.USAGE,
                {
                    **keys,
                    "data_mb": usage.data_mb[at],
                    "voice_minutes": usage.voice_minutes[at],
                    "sms_count": usage.sms_count[at],
                },
            ),
        }

    def ticket_table(self, tickets: Tickets) -> pa.Table:
        kept = tickets.select(self.active[tickets.customer, tickets.day])
        opened = self.instants(kept.day * 1440.0 + kept.opened_minute)
        order = np.lexsort((kept.customer, opened))
        kept, opened = kept.select(order), opened[order]
        resolved = opened + (kept.resolution_hours * 3_600_000).astype(np.int64)
        horizon_ms = self.start_ms + self.config.days * MS_PER_DAY
        return build_table(
            schemas.TICKETS,
            {
                "ticket_id": _sequence_ids("tkt", len(opened)),
                "customer_id": self.customer_ids(kept.customer),
                "opened_at": opened,
                "resolved_at": masked(resolved, schemas.UTC_MS, resolved >= horizon_ms),
                "category": _names(TICKET_CATEGORIES, kept.category),
                "channel": _names(CHANNELS, kept.channel),
                "is_complaint": kept.is_complaint,
            },
        )

    def invoice_table(self, invoices: Invoices) -> pa.Table:
        billed = self.active[invoices.customer, invoices.day]
        issued = invoices.day[billed]
        due = issued + PAYMENT_TERMS_DAYS
        paid = due + invoices.days_to_pay[billed]
        return build_table(
            schemas.INVOICES,
            {
                "invoice_id": _sequence_ids("inv", int(billed.sum())),
                "customer_id": self.customer_ids(invoices.customer[billed]),
                "issued_on": self.dates(issued),
                "due_on": self.dates(due),
                "amount": invoices.amount[billed],
                "paid_on": masked(self.dates(paid), pa.date32(), paid >= self.config.days),
            },
        )

    def credit_table(self, credits: Credits) -> pa.Table:
        granted = self.active[credits.customer, credits.day]
        count = int(granted.sum())
        return build_table(
            schemas.CREDITS,
            {
                "credit_id": _sequence_ids("crd", count),
                "customer_id": self.customer_ids(credits.customer[granted]),
                "issued_on": self.dates(credits.day[granted]),
                "amount": credits.amount[granted],
                "reason": ["outage goodwill"] * count,
            },
        )

    def churn_table(self, churn: Churn) -> pa.Table:
        return build_table(
            schemas.CHURN,
            {
                "customer_id": self.customers.ids,
                "churned": churn.churned,
                "churn_date": masked(self.dates(churn.day), pa.date32(), ~churn.churned),
            },
        )

    def incident_table(self, incidents: Incidents) -> pa.Table:
        no_lead = np.isnan(incidents.lead_start_min)
        return build_table(
            schemas.INCIDENTS,
            {
                "incident_id": [f"inc_{i:06d}" for i in incidents.incident],
                "kind": _names(tuple(k.name for k in catalog.FAULT_KINDS), incidents.kind),
                "is_outage": np.array([catalog.FAULT_KINDS[k].outage for k in incidents.kind]),
                "cell_id": id_array(self.cells.ids, incidents.cell),
                "start_at": self.instants(incidents.start_min),
                "end_at": self.instants(incidents.end_min),
                "lead_start_at": masked(
                    self.instants(incidents.lead_start_min), schemas.UTC_MS, no_lead
                ),
            },
        )

    def trait_table(self, effects: ActionEffects) -> pa.Table:
        c = self.customers
        return build_table(
            schemas.TRAITS,
            {
                "customer_id": c.ids,
                "price_sensitivity": c.price_sensitivity.astype(np.float32),
                "network_sensitivity": c.network_sensitivity.astype(np.float32),
                "financial_stress": c.financial_stress.astype(np.float32),
                "hr_credit": effects.credit,
                "hr_message": effects.message,
                "hr_offer": effects.offer,
                "hr_priority_repair": effects.priority_repair,
            },
        )

    def market_table(self, pressure: np.ndarray) -> pa.Table:
        region, day = np.indices(pressure.shape).reshape(2, -1)
        return build_table(
            schemas.MARKET,
            {
                "region": _names(REGION_NAMES, region),
                "date": self.dates(day),
                "competitor_pressure": pressure.ravel(),
            },
        )
