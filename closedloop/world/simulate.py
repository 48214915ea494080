"""Run the whole simulation in memory: config in, documented Arrow tables out (no I/O)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel

from closedloop.world import catalog
from closedloop.world.churn import (
    ActionEffects,
    Churn,
    action_effects,
    churn_at,
    competitor_pressure,
    hazard,
)
from closedloop.world.config import WorldConfig
from closedloop.world.experience import (
    Credits,
    Experience,
    Invoices,
    Tickets,
    Usage,
    cell_days,
    simulate_credits,
    simulate_experience,
    simulate_invoices,
    simulate_tickets,
    simulate_usage,
)
from closedloop.world.inventory import Cells, Customers, make_cells, make_customers
from closedloop.world.network import Incidents, Network, simulate_network
from closedloop.world.raw import RawTelemetry, render_telemetry
from closedloop.world.stream import simulate_events
from closedloop.world.tables import Tabulator

STEPS: tuple[str, ...] = ("inventory", "network", "customers", "churn", "events", "telemetry")


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


@dataclass(frozen=True)
class Truth:
    """The simulated operator before any table is written: what a re-simulation needs."""

    config: WorldConfig
    cells: Cells
    customers: Customers
    network: Network
    experience: Experience
    usage: Usage
    tickets: Tickets
    credits: Credits
    invoices: Invoices
    pressure: np.ndarray
    effects: ActionEffects
    hazard: np.ndarray  # (customers, days) daily churn hazard, untreated
    threshold: np.ndarray  # cumulative hazard at which each customer leaves
    churn: Churn
    events: pd.DataFrame
    raw_rng: np.random.Generator  # the stream telemetry is rendered from


def simulate_truth(config: WorldConfig, on_step: Callable[[str], None] = lambda _: None) -> Truth:
    """Everything but the raw telemetry and the tables; the same config gives the same truth."""
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
    daily_hazard = hazard(config, customers, experience, daily, tickets, credits, pressure, effects)
    threshold = streams["churn"].exponential(1.0, len(customers))
    churn = churn_at(daily_hazard, threshold)
    active = churn.active(config.days)
    on_step("churn")

    events = simulate_events(
        network, cells, customers, experience.failed_sessions, active, config.dirt,
        streams["events"],
    )  # fmt: skip
    on_step("events")
    return Truth(
        config, cells, customers, network, experience, usage, tickets, credits, invoices,
        pressure, effects, daily_hazard, threshold, churn, events, streams["raw"],
    )  # fmt: skip


def simulate(config: WorldConfig, on_step: Callable[[str], None] = lambda _: None) -> World:
    """Generate a world; ``on_step`` is called with each name of :data:`STEPS` as it completes."""
    truth = simulate_truth(config, on_step)
    cells, customers, network = truth.cells, truth.customers, truth.network
    experience, usage, tickets = truth.experience, truth.usage, truth.tickets
    credits, invoices, pressure, effects = (
        truth.credits,
        truth.invoices,
        truth.pressure,
        truth.effects,
    )
    churn, events = truth.churn, truth.events
    telemetry = render_telemetry(network, cells, config.dirt, truth.raw_rng, config.drift.firmware)
    on_step("telemetry")
    active = churn.active(config.days)

    tabulate = Tabulator(config, cells, customers, active)
    tables = {
        "customers": tabulate.customer_table(),
        "cells": tabulate.cell_table(),
        **tabulate.daily_tables(experience, usage),
        "tickets": tabulate.ticket_table(tickets),
        "invoices": tabulate.invoice_table(invoices),
        "credits": tabulate.credit_table(credits),
        "churn": tabulate.churn_table(churn),
        "incidents": tabulate.incident_table(network.incidents),
        "traits": tabulate.trait_table(effects),
        "market": tabulate.market_table(pressure),
    }
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
        incidents=_incidents_by_kind(network.incidents),
        incident_rate_per_cell_day=len(np.unique(network.incidents.incident))
        / (len(cells) * config.days),
        events=dict(sorted(Counter(events["event_type"]).items())),
        dirt={r.vendor: r.dirt for r in telemetry},
    )
    return World(config=config, tables=tables, telemetry=telemetry, events=events, summary=summary)


def _incidents_by_kind(incidents: Incidents) -> dict[str, int]:
    """Incidents (not affected cells) per fault kind."""
    first_rows = np.unique(incidents.incident, return_index=True)[1]
    kinds = Counter(catalog.FAULT_KINDS[k].name for k in incidents.kind[first_rows])
    return dict(sorted(kinds.items()))
