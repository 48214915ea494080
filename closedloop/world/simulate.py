"""Run the whole simulation in memory: config in, documented Arrow tables out (no I/O)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel

from closedloop.world import catalog, schemas
from closedloop.world.churn import (
    Churn,
    action_effects,
    competitor_pressure,
    draw_churn,
    hazard,
)
from closedloop.world.config import WorldConfig
from closedloop.world.experience import (
    CHANNELS,
    PAYMENT_TERMS_DAYS,
    TICKET_CATEGORIES,
    cell_days,
    simulate_credits,
    simulate_experience,
    simulate_invoices,
    simulate_tickets,
    simulate_usage,
)
from closedloop.world.inventory import Cells, Customers, make_cells, make_customers
from closedloop.world.network import simulate_network
from closedloop.world.raw import RawTelemetry, render_telemetry
from closedloop.world.schemas import build_table
from closedloop.world.stream import simulate_events

STEPS: tuple[str, ...] = ("inventory", "network", "telemetry", "customers", "churn", "events")
MS_PER_DAY = 86_400_000


class WorldSummary(BaseModel):
    """Headline figures of a generated world, written to its manifest and printed by the CLI."""

    customers: int
    cells: int
    days: int
    rows: dict[str, int]
    churned: int
    churn_rate_30d: float
    incidents: dict[str, int]
    incident_rate_per_cell_day: float
    events: dict[str, int]
    dirt: dict[str, dict[str, int]]


@dataclass(frozen=True)
class World:
    config: WorldConfig
    tables: dict[str, pa.Table]  # by TableSpec.name, telemetry excluded
    telemetry: list[RawTelemetry]
    events: pd.DataFrame
    summary: WorldSummary


def _names(options: tuple[str, ...], index: np.ndarray) -> pa.Array:
    return schemas.id_array(np.array(options, dtype=object), index)


def _day_numbers(config: WorldConfig, day: np.ndarray) -> np.ndarray:
    return (np.datetime64(config.start, "D").astype(np.int64) + day).astype(np.int32)


def _customer_table(config: WorldConfig, customers: Customers, cells: Cells) -> pa.Table:
    start = np.datetime64(config.start, "D").astype(np.int64)
    contract_end = np.where(
        customers.contract_end_day >= 0, start + customers.contract_end_day, 0
    ).astype(np.int32)
    return build_table(
        schemas.CUSTOMERS,
        {
            "customer_id": customers.ids,
            "segment": _names(catalog.SEGMENTS, customers.segment),
            "sla_tier": _names(catalog.SLA_TIERS, customers.sla),
            "plan": _names(tuple(p.name for p in catalog.PLANS), customers.plan),
            "list_price": customers.list_price,
            "mrr": customers.mrr,
            "contract_type": _names(catalog.CONTRACTS, customers.contract),
            "contract_end": pa.array(
                contract_end, type=pa.date32(), mask=customers.contract_end_day < 0
            ),
            "signup_date": (start - customers.tenure_days).astype(np.int32),
            "tenure_months": (customers.tenure_days / 30.4).astype(np.int32),
            "region": _names(tuple(r.name for r in catalog.REGIONS), customers.region),
            "cell_id": schemas.id_array(cells.ids, customers.cell),
            "device_type": _names(catalog.DEVICES, customers.device),
            "do_not_contact": customers.do_not_contact,
            "bill_cycle_day": customers.bill_cycle_day,
        },
    )


def _cell_table(cells: Cells) -> pa.Table:
    return build_table(
        schemas.CELLS,
        {
            "cell_id": cells.ids,
            "region": _names(tuple(r.name for r in catalog.REGIONS), cells.region),
            "timezone": _names(tuple(r.timezone for r in catalog.REGIONS), cells.region),
            "technology": _names(catalog.TECHNOLOGIES, cells.technology),
            "vendor": _names(catalog.VENDORS, cells.vendor),
            "capacity_mbps": cells.capacity_mbps,
            "max_users": cells.max_users,
            "baseline_latency_ms": cells.baseline_latency_ms,
        },
    )


def _sequence_ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}_{i:08d}" for i in range(1, count + 1)]


def simulate(config: WorldConfig, on_step: Callable[[str], None] = lambda _: None) -> World:
    """Generate a world; ``on_step`` is called with each name of :data:`STEPS` as it completes."""
    streams = dict(
        zip(
            ("cells", "customers", "network", "raw", "experience", "churn", "events"),
            (np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(7)),
            strict=True,
        )
    )
    cells = make_cells(config, streams["cells"])
    customers = make_customers(config, cells, streams["customers"])
    on_step("inventory")

    network = simulate_network(config, cells, streams["network"])
    on_step("network")

    telemetry = render_telemetry(network, cells, config.dirt, streams["raw"])
    on_step("telemetry")

    rng = streams["experience"]
    daily = cell_days(network, cells, config.intervals_per_day)
    experience = simulate_experience(customers, daily, rng)
    usage = simulate_usage(config, customers, experience, rng)
    tickets = simulate_tickets(customers, experience, rng)
    credits = simulate_credits(config, customers, experience, rng)
    invoices = simulate_invoices(config, customers, rng)
    on_step("customers")

    pressure = competitor_pressure(config, streams["churn"])
    effects = action_effects(customers)
    churn = draw_churn(
        hazard(config, customers, experience, daily, tickets, credits, pressure, effects),
        streams["churn"],
    )
    active = churn.active(config.days)
    on_step("churn")

    events = simulate_events(
        network, cells, customers, experience.failed_sessions, active, config.dirt,
        streams["events"],
    )  # fmt: skip
    on_step("events")

    start_ms = np.datetime64(config.start, "ms").astype(np.int64)
    horizon_ms = start_ms + config.days * MS_PER_DAY
    customer, day = np.nonzero(active)
    tables = {
        "customers": _customer_table(config, customers, cells),
        "cells": _cell_table(cells),
        "experience": build_table(
            schemas.EXPERIENCE,
            {
                "customer_id": schemas.id_array(customers.ids, customer),
                "date": _day_numbers(config, day),
                "outage_minutes": experience.outage_minutes[customer, day],
                "degraded_minutes": experience.degraded_minutes[customer, day],
                "latency_p95_ms": experience.latency_p95_ms[customer, day],
                "failed_sessions": experience.failed_sessions[customer, day],
            },
        ),
        "usage": build_table(
            schemas.USAGE,
            {
                "customer_id": schemas.id_array(customers.ids, customer),
                "date": _day_numbers(config, day),
                "data_mb": usage.data_mb[customer, day],
                "voice_minutes": usage.voice_minutes[customer, day],
                "sms_count": usage.sms_count[customer, day],
            },
        ),
    }
    del customer, day

    kept = tickets.select(active[tickets.customer, tickets.day])
    opened = start_ms + kept.day * MS_PER_DAY + kept.opened_minute * 60_000
    order = np.lexsort((kept.customer, opened))
    kept, opened = kept.select(order), opened[order]
    resolved = opened + (kept.resolution_hours * 3_600_000).astype(np.int64)
    tables["tickets"] = build_table(
        schemas.TICKETS,
        {
            "ticket_id": _sequence_ids("tkt", len(opened)),
            "customer_id": schemas.id_array(customers.ids, kept.customer),
            "opened_at": opened,
            "resolved_at": pa.array(resolved, schemas.UTC_MS, mask=resolved >= horizon_ms),
            "category": _names(TICKET_CATEGORIES, kept.category),
            "channel": _names(CHANNELS, kept.channel),
            "is_complaint": kept.is_complaint,
        },
    )

    billed = active[invoices.customer, invoices.day]
    issued = invoices.day[billed]
    due = issued + PAYMENT_TERMS_DAYS
    paid = due + invoices.days_to_pay[billed]
    tables["invoices"] = build_table(
        schemas.INVOICES,
        {
            "invoice_id": _sequence_ids("inv", int(billed.sum())),
            "customer_id": schemas.id_array(customers.ids, invoices.customer[billed]),
            "issued_on": _day_numbers(config, issued),
            "due_on": _day_numbers(config, due),
            "amount": invoices.amount[billed],
            "paid_on": pa.array(_day_numbers(config, paid), pa.date32(), mask=paid >= config.days),
        },
    )

    granted = active[credits.customer, credits.day]
    tables["credits"] = build_table(
        schemas.CREDITS,
        {
            "credit_id": _sequence_ids("crd", int(granted.sum())),
            "customer_id": schemas.id_array(customers.ids, credits.customer[granted]),
            "issued_on": _day_numbers(config, credits.day[granted]),
            "amount": credits.amount[granted],
            "reason": pa.array(["outage goodwill"] * int(granted.sum()), pa.string()),
        },
    )
    tables["churn"] = _churn_table(config, customers, churn)
    tables["incidents"] = _incident_table(network, cells, start_ms)
    tables["traits"] = build_table(
        schemas.TRAITS,
        {
            "customer_id": customers.ids,
            "price_sensitivity": customers.price_sensitivity.astype(np.float32),
            "network_sensitivity": customers.network_sensitivity.astype(np.float32),
            "financial_stress": customers.financial_stress.astype(np.float32),
            "hr_credit": effects.credit,
            "hr_message": effects.message,
            "hr_offer": effects.offer,
            "hr_priority_repair": effects.priority_repair,
        },
    )
    region, market_day = np.indices(pressure.shape).reshape(2, -1)
    tables["market"] = build_table(
        schemas.MARKET,
        {
            "region": _names(tuple(r.name for r in catalog.REGIONS), region),
            "date": _day_numbers(config, market_day),
            "competitor_pressure": pressure.ravel(),
        },
    )

    summary = WorldSummary(
        customers=config.customers,
        cells=len(cells),
        days=config.days,
        rows={
            **{name: t.num_rows for name, t in tables.items()},
            **{f"telemetry_{r.vendor}": r.table.num_rows for r in telemetry},
            "events": len(events),
        },
        churned=int(churn.churned.sum()),
        churn_rate_30d=float(churn.churned.mean() * 30 / config.days),
        incidents=dict(
            sorted(
                Counter(
                    catalog.FAULT_KINDS[k].name
                    for k in np.unique(
                        np.stack([network.incidents.incident, network.incidents.kind]), axis=1
                    )[1]
                ).items()
            )
        ),
        incident_rate_per_cell_day=float(
            len(np.unique(network.incidents.incident)) / (len(cells) * config.days)
        ),
        events=dict(sorted(Counter(events["event_type"]).items())),
        dirt={r.vendor: r.dirt for r in telemetry},
    )
    return World(config=config, tables=tables, telemetry=telemetry, events=events, summary=summary)


def _churn_table(config: WorldConfig, customers: Customers, churn: Churn) -> pa.Table:
    return build_table(
        schemas.CHURN,
        {
            "customer_id": customers.ids,
            "churned": churn.churned,
            "churn_date": pa.array(
                _day_numbers(config, churn.day), pa.date32(), mask=~churn.churned
            ),
        },
    )


def _incident_table(network, cells: Cells, start_ms: int) -> pa.Table:
    incidents = network.incidents
    to_ms = lambda minutes: start_ms + np.nan_to_num(minutes * 60_000).astype(np.int64)  # noqa: E731
    return build_table(
        schemas.INCIDENTS,
        {
            "incident_id": [f"inc_{i:06d}" for i in incidents.incident],
            "kind": _names(tuple(k.name for k in catalog.FAULT_KINDS), incidents.kind),
            "is_outage": np.array([catalog.FAULT_KINDS[k].outage for k in incidents.kind], bool),
            "cell_id": schemas.id_array(cells.ids, incidents.cell),
            "start_at": to_ms(incidents.start_min),
            "end_at": to_ms(incidents.end_min),
            "lead_start_at": pa.array(
                to_ms(incidents.lead_start_min),
                schemas.UTC_MS,
                mask=np.isnan(incidents.lead_start_min),
            ),
        },
    )
