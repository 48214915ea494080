"""Action layer: event → decisions committed in the ledger (with guards and the audit chain).

    python -m bench.actions [--events 3000] [--outage 5000] [--rounds 3] [--ledger postgresql]
    python -m bench.actions --models [--outage 5000] [--home DIR]    # real champions

Embedded profile (SQLite, WAL) in a temporary home, or with ``--ledger postgresql`` the cluster
profile's ledger in a throwaway schema of the local PostgreSQL (dropped after each round; the
CPU column then counts this process only, not the server's work), the packaged default policy,
scores from a fixed provider (model scoring is measured by ``bench.serving``).

With ``--models`` only the big outage is measured, on the event path as ``closedloop replay``
and the service run it: a simulated world of OUTAGE customers (``bench.load``'s home: churn and
fault champions trained, online store materialised; kept in ``--home`` when given), its
champions loaded in this process, the online store read and the cell's live features written,
every customer of the world served by the alarmed cell. Targets on 2 cores:

1. latency: one outage event affecting one customer, p99 <= 5 ms (each event its own
   transaction: classify, decide, guards, decisions and audit rows committed);
2. throughput: >= 1,000 events/s sustained, events back to back in batches of 100 per
   transaction, as ``POST /events`` and ``closedloop replay`` commit them;
3. a big outage: one alarm on a cell of OUTAGE customers fully decided and recorded <= 2 s
   (<= 3 s on the PostgreSQL ledger; its other targets are those of the event stream,
   ``bench.streams``).

Dispatch to the local outbox is measured after each, as actions delivered per second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from rich.console import Console
from rich.table import Table

from actions.adapters import OutboxAdapter
from actions.anchor import Anchor
from actions.decide import Customer
from actions.dispatch import Dispatcher
from actions.ledger import Ledger
from actions.policy import ActionType, load_policy
from actions.processor import Directory, Processor
from actions.runtime import customers_directory, live_writer
from closedloop.events import EventType, NetworkEvent, Severity
from closedloop.scores import Score

START = datetime(2026, 3, 1, tzinfo=UTC)
TIERS = ("bronze", "silver", "gold", "platinum")
TARGETS = {"sqlite": (5.0, 1_000.0, 2.0), "postgresql": (None, None, 3.0)}
"""Per ledger: latency p99 (ms), sustained events/s and the big outage (s); None: no target."""
POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
BATCH = 100  # events per transaction when they arrive back to back (a POST /events, a replay)


class FixedScores:
    """Scores made before the clock starts: churn 0.1–0.9 spread over customers, fault 0.6
    for every cell (what scoring costs is ``bench.serving``'s measure, not this one's)."""

    def __init__(self, people: list[Customer]) -> None:
        self.by_customer = {
            c.customer_id: _score(c.customer_id, "churn", 0.1 + n % 9 / 10)
            for n, c in enumerate(people)
        }
        self.by_cell = {c.cell_id: _score(c.cell_id, "fault", 0.6) for c in people}

    def churn(self, customer_ids: list[str]) -> dict[str, Score]:
        return {c: self.by_customer[c] for c in customer_ids}

    def fault(self, cell_id: str) -> Score | None:
        return self.by_cell.get(cell_id)

    def explain(self, scores: list[Score]) -> list[Score]:
        return scores


def _score(entity: str, model: str, probability: float) -> Score:
    features = {"outage_minutes_7d": 35.0, "dropped_sessions_7d": 4.0, "tenure_months": 14.0}
    return Score(
        entity_id=entity, model=model, model_version="1", feature_service=f"{model}_v1",
        probability=probability, features=features,
    )  # fmt: skip


def customers(cells: int, per_cell: int, prefix: str) -> list[Customer]:
    return [
        Customer(
            f"{prefix}_{cell:05d}_{n:05d}",
            f"{prefix}_cell_{cell:05d}",
            "consumer",
            TIERS[n % 4],
            "month_to_month",
            20.0 + n % 80,
        )
        for cell in range(cells)
        for n in range(per_cell)
    ]


def onset(cell: str, n: int) -> NetworkEvent:
    return NetworkEvent(
        event_id=f"ev-{cell}-{n}", event_type=EventType.ALARM_ONSET,
        occurred_at=START + timedelta(seconds=n), cell_id=cell, severity=Severity.CRITICAL,
        alarm_id=f"alm-{cell}-{n}",
    )  # fmt: skip


def open_home(
    folder: Path, people: list[Customer], schema: str | None
) -> tuple[Processor, Dispatcher, Ledger]:
    """A processor and dispatcher on a SQLite ledger under ``folder``, or on the local
    PostgreSQL in ``schema`` when one is named."""
    anchor = Anchor.generated(folder / "audit.key", folder / "audit-head.json")
    if schema is not None:
        ledger = Ledger.postgresql(POSTGRES, schema, anchor)
    else:
        ledger = Ledger.sqlite(folder / "ledger.db", anchor)
    processor = Processor(ledger, load_policy(None), Directory.of(people), FixedScores(people))
    outbox = OutboxAdapter(folder / "outbox")
    return processor, Dispatcher(ledger, dict.fromkeys(ActionType, outbox), 0, 0), ledger


class Stopwatch:
    """Wall time and this process's CPU time of a block (CPU time shows what the code costs
    when the two cores are shared with other work)."""

    def __enter__(self) -> Stopwatch:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def one_round(folder: Path, events: int, outage: int, kind: str) -> dict[str, float]:
    single = customers(events, 1, "one")
    big = customers(1, outage, "big")
    schema = f"bench_actions_{uuid.uuid4().hex[:8]}" if kind == "postgresql" else None
    processor, dispatcher, ledger = open_home(folder, single + big, schema)
    walls, cpus = [], []
    for n, customer in enumerate(single[: events // 2]):
        with Stopwatch() as one:
            processor.process(onset(customer.cell_id, n))
        walls.append(one.wall)
        cpus.append(one.cpu)
    with Stopwatch() as delivery:
        sent = dispatcher.drain().total()
    rest = [onset(c.cell_id, n) for n, c in enumerate(single[events // 2 :])]
    with Stopwatch() as stream:
        for start in range(0, len(rest), BATCH):
            processor.process_many(rest[start : start + BATCH])
    with Stopwatch() as big_outage:
        decided = processor.process(onset(big[0].cell_id, 0))
    ledger.close()
    if schema is not None:
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    walls.sort()
    cpus.sort()
    p99 = int(0.99 * (len(walls) - 1))
    return {
        "p50_ms": 1000 * statistics.median(walls),
        "p99_ms": 1000 * walls[p99],
        "cpu_p50_ms": 1000 * statistics.median(cpus),
        "cpu_p99_ms": 1000 * cpus[p99],
        "events_per_s": len(rest) / stream.wall,
        "cpu_events_per_s": len(rest) / stream.cpu,
        "outage_s": big_outage.wall,
        "cpu_outage_s": big_outage.cpu,
        "outage_decisions": len(decided.decisions),
        "dispatch_per_s": sent / delivery.wall,
        "cpu_dispatch_per_s": sent / delivery.cpu,
    }


def model_round(folder: Path, home: Path, outage: int, kind: str) -> dict[str, float]:
    """The big outage with the world's champions and online features: an alarm on a cell that
    serves every customer of the world."""
    from bench.load import prepare_home
    from serving.actions_bridge import in_process_scores

    settings, _ = prepare_home(home, outage)
    scores, problems = in_process_scores(settings)
    if problems:
        raise SystemExit(f"the world's models cannot score: {'; '.join(problems)}")
    world = customers_directory(settings)
    cell = min(world.cells)
    people = [replace(c, cell_id=cell) for c in world.by_id.values()]
    schema = f"bench_actions_{uuid.uuid4().hex[:8]}" if kind == "postgresql" else None
    processor, _, ledger = open_home(folder, people, schema)
    processor.scores, processor.telemetry = scores, live_writer(settings)
    scores.explain(list(scores.churn([c.customer_id for c in people[:10]]).values()))  # loaded
    try:
        with Stopwatch() as big_outage:
            decided = processor.process(onset(cell, 0))
    finally:
        ledger.close()
        if processor.telemetry is not None:
            processor.telemetry.close()
        if schema is not None:
            with psycopg.connect(POSTGRES, autocommit=True) as admin:
                admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return {
        "outage_s": big_outage.wall,
        "cpu_outage_s": big_outage.cpu,
        "outage_decisions": len(decided.decisions),
        "outage_customers": decided.affected_customers,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3_000, help="single-customer outages")
    parser.add_argument("--outage", type=int, default=5_000, help="customers of the big outage")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ledger", choices=sorted(TARGETS), default="sqlite")
    parser.add_argument(
        "--models", action="store_true", help="the big outage only, with real champions"
    )
    parser.add_argument("--home", type=Path, help="with --models: the world's home, kept")
    args = parser.parse_args(argv)
    target_p99, target_events, target_outage = TARGETS[args.ledger]
    rounds = []
    with tempfile.TemporaryDirectory() as kept:
        home = args.home or Path(kept) / "home"
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as tmp:
                rounds.append(
                    model_round(Path(tmp), home, args.outage, args.ledger)
                    if args.models
                    else one_round(Path(tmp), args.events, args.outage, args.ledger)
                )

    def median(name: str) -> float:
        return statistics.median(r[name] for r in rounds)

    load = Path("/proc/loadavg").read_text().split()[0]
    scored = "real champions and online features" if args.models else "fixed scores"
    table = Table(
        title=f"action layer, {args.ledger} ledger, {scored}, median of {args.rounds} rounds "
        f"(load average {load} on {os.cpu_count()} cores)"
    )
    for column in ("measure", "wall", "CPU", "target", "met (wall)", "met (CPU)"):
        table.add_column(column)

    def target(name: str, limit: float | None, unit: str, most: bool = True) -> tuple[str, ...]:
        """The target column and whether wall and CPU met it ('' without a target)."""
        if limit is None:
            return "", "", ""
        wall, cpu = median(name), median(f"cpu_{name}")
        ok = (lambda v: v <= limit) if most else (lambda v: v >= limit)
        shown = f"{'<=' if most else '>='} {limit:,g}{unit}"
        return shown, "yes" if ok(wall) else "NO", "yes" if ok(cpu) else "NO"

    outage = (
        f"outage of {median('outage_customers') if args.models else args.outage:,.0f} customers"
        f" ({median('outage_decisions'):,.0f} decisions)",
        f"{median('outage_s'):.2f} s", f"{median('cpu_outage_s'):.2f} s",
        *target("outage_s", target_outage, " s"),
    )  # fmt: skip
    rows = [outage] if args.models else [
        ("latency p50, 1-customer outage", f"{median('p50_ms'):.2f} ms",
         f"{median('cpu_p50_ms'):.2f} ms", "", "", ""),
        ("latency p99, 1-customer outage", f"{median('p99_ms'):.2f} ms",
         f"{median('cpu_p99_ms'):.2f} ms", *target("p99_ms", target_p99, " ms")),
        (f"sustained events / s (batches of {BATCH})", f"{median('events_per_s'):,.0f}",
         f"{median('cpu_events_per_s'):,.0f}",
         *target("events_per_s", target_events, "", most=False)),
        outage,
        ("dispatch to the outbox, actions / s", f"{median('dispatch_per_s'):,.0f}",
         f"{median('cpu_dispatch_per_s'):,.0f}", "", "", ""),
    ]  # fmt: skip
    for row in rows:
        table.add_row(*row)
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
