"""Event intake on the cluster profile: events appended to a Redis stream, decided and committed
to a PostgreSQL ledger by ``closedloop consume`` processes of one consumer group.

    python -m bench.streams [--events 4000] [--consumers 2] [--customers 2000] [--batch 200]
    python -m bench.streams --rate 10 --seconds 120 --alarm-every 10   # the bounded load test

A small simulated world in a temporary home, its ledger in a throwaway schema of the local
PostgreSQL and its stream under a throwaway key of the local Redis (both removed at the end).
The consumers run with ``--no-models`` (rules at probability 0 only; model scoring is measured
by ``bench.serving``). Events are KPI degradations spread over the cells, each its own
incident, appended in chunks of 100 as ``POST /events`` appends them. Printed: how fast the
stream took them, how fast the consumers decided and committed them (first append to last
commit), and the ledger's accounting: events decided, lost, decided twice.

With ``--rate R --seconds S`` (the load test) the events are appended on a fixed schedule, R a
second for S seconds, instead of all at once; printed besides: how late the appends ran, the
errors (dead letters, failures recorded on entries, consumers that exited), each consumer's
resident memory when the load started and when it ended, and every event accounted for in the
ledger as actioned (a decision not suppressed), suppressed (decisions, all suppressed) or
needing no action (no decision).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import redis
from rich.console import Console
from rich.table import Table

from actions.streams import RedisStream
from closedloop.events import EventType, NetworkEvent, Severity
from closedloop.settings import Settings
from closedloop.world.config import WorldConfig
from closedloop.world.simulate import simulate
from closedloop.world.store import write_world
from features.ingest import ingest_world
from features.offline import OfflineStore

DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/0"
AT = datetime(2026, 1, 11, 9, 0, tzinfo=UTC)
CHUNK = 100


def make_events(cells: list[str], n: int, alarm_every: int = 0) -> list[NetworkEvent]:
    """KPI degradations spread over the cells; every ``alarm_every``-th event (0: none) a
    critical alarm onset of its own, which opens an outage with decisions for the cell's
    customers."""
    return [
        NetworkEvent(
            event_id=f"bench-{i}", event_type=EventType.ALARM_ONSET,
            cell_id=cells[i % len(cells)], occurred_at=AT - timedelta(seconds=i),
            severity=Severity.CRITICAL, alarm_id=f"bench-alarm-{i}",
        )
        if alarm_every and i % alarm_every == 0
        else NetworkEvent(
            event_id=f"bench-{i}", event_type=EventType.KPI_DEGRADATION,
            cell_id=cells[i % len(cells)], occurred_at=AT - timedelta(seconds=i),
            severity=Severity.MAJOR, metric="latency_ms", value=150.0 + i % 50, threshold=90.0,
        )
        for i in range(n)
    ]  # fmt: skip


def ledger_count(settings: Settings, sql: str) -> int:
    with psycopg.connect(DSN) as db:
        return int(db.execute(sql.replace("LEDGER", f'"{settings.ledger_schema}"')).fetchone()[0])


ACCOUNTING = """
SELECT COUNT(*) FILTER (WHERE acted > 0), COUNT(*) FILTER (WHERE acted = 0 AND held > 0),
       COUNT(*) FILTER (WHERE acted = 0 AND held = 0)
FROM (SELECT e.event_id,
             COUNT(d.key) FILTER (WHERE d.status <> 'suppressed') AS acted,
             COUNT(d.key) FILTER (WHERE d.status = 'suppressed') AS held
      FROM LEDGER.events e LEFT JOIN LEDGER.decisions d ON d.event_id = e.event_id
      GROUP BY e.sender, e.event_id) AS per_event"""


LEDGER_SIZE = """
SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'SCHEMA' AND c.relkind = 'r'"""
"""Bytes the ledger's tables take on the server, their indexes and TOAST included."""


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def ledger_counts(settings: Settings, sql: str) -> tuple[int, ...]:
    with psycopg.connect(DSN) as db:
        return tuple(db.execute(sql.replace("LEDGER", f'"{settings.ledger_schema}"')).fetchone())


def append_on_schedule(stream: RedisStream, made: list[NetworkEvent], rate: float | None) -> float:
    """Append the events in chunks of :data:`CHUNK`, or ``rate`` a second in chunks of a tenth
    of a second; the largest lateness of a chunk behind its schedule, in seconds."""
    began, late = time.perf_counter(), 0.0
    chunk = CHUNK if rate is None else max(1, round(rate / 10))
    for start in range(0, len(made), chunk):
        if rate is not None:
            due = began + start / rate
            late = max(late, time.perf_counter() - due)
            time.sleep(max(0.0, due - time.perf_counter()))
        stream.append(made[start : start + chunk])
    return late


def run(
    events: int,
    consumers: int,
    customers: int,
    batch: int,
    console: Console,
    rate: float | None = None,
    alarm_every: int = 0,
) -> None:
    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as folder:
        home = Path(folder)
        write_world(
            simulate(WorldConfig(customers=customers, days=10, seed=3, customers_per_cell=20)),
            home / "world",
        )
        ingest_world(home / "world", home, AT)
        settings = Settings(
            home=home, profile="cluster", postgres_dsn=DSN, redis_url=REDIS,
            ledger_schema=f"bench_streams_{tag}", stream_key=f"bench:{tag}:events",
        )  # fmt: skip
        cells = sorted(OfflineStore(home).read("customers").cell_id.unique())
        made = make_events(cells, events, alarm_every)
        stream = RedisStream(REDIS, settings.stream_key, settings.stream_group, 30.0)
        env = {**os.environ, **settings.environment()}
        command = [sys.executable, "-m", "closedloop", "consume", "--no-models"]
        running = [
            subprocess.Popen(
                [*command, "--consumer", f"bench-{n}", "--batch", str(batch)], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )
            for n in range(consumers)
        ]  # fmt: skip
        try:
            client = redis.Redis.from_url(REDIS)
            deadline = time.monotonic() + 120
            while True:  # every consumer opened its runtime and joined the group
                try:
                    joined = len(client.xinfo_consumers(settings.stream_key, settings.stream_group))
                except redis.ResponseError:
                    joined = 0
                if joined == consumers:
                    break
                for process in running:
                    if process.poll() is not None:
                        raise RuntimeError(process.stderr.read())
                if time.monotonic() > deadline:
                    raise RuntimeError("the consumers did not start")
                time.sleep(0.2)
            rss_start = [rss_mb(p.pid) for p in running]
            began = time.perf_counter()
            late = append_on_schedule(stream, made, rate)
            appended = time.perf_counter() - began
            while ledger_count(settings, "SELECT COUNT(*) FROM LEDGER.events") < len(made):
                if time.perf_counter() - began > 600 + (len(made) / rate if rate else 0):
                    raise RuntimeError("the consumers did not finish within 10 minutes")
                if any(p.poll() is not None for p in running):
                    break  # counted as an error below
                time.sleep(0.05)
            decided = time.perf_counter() - began
            rss_end = [rss_mb(p.pid) if p.poll() is None else float("nan") for p in running]
            exited = sum(p.poll() is not None for p in running)
            dead, failed = (
                client.xlen(settings.stream_key + ":dead"),
                client.hlen(settings.stream_key + ":errors"),
            )
        finally:
            for process in running:
                process.send_signal(signal.SIGTERM)
            for process in running:
                process.wait(60)
        audited = ledger_count(
            settings, "SELECT COUNT(DISTINCT event_id) FROM LEDGER.audit WHERE kind = 'event'"
        )
        rows = ledger_count(settings, "SELECT COUNT(*) FROM LEDGER.audit WHERE kind = 'event'")
        decisions = ledger_count(settings, "SELECT COUNT(*) FROM LEDGER.decisions")
        actioned, suppressed, no_action = ledger_counts(settings, ACCOUNTING)
        (size,) = ledger_counts(settings, LEDGER_SIZE.replace("SCHEMA", settings.ledger_schema))
        client.delete(*(settings.stream_key + s for s in ("", ":dead", ":errors")))
        client.close()
        stream.close()
        with psycopg.connect(DSN, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{settings.ledger_schema}" CASCADE')
    title = f"event stream: {events:,} events, {consumers} consumer(s), batch {batch}"
    if alarm_every:
        title += f", every {alarm_every}th an alarm onset"
    if rate is not None:
        title += f", offered at {rate:g} events/s for {events / rate:.0f} s"
    table = Table(title=title)
    for column in ("measure", "value"):
        table.add_column(column)
    table.add_row("appended to the stream", f"{events / appended:,.0f} events/s")
    if rate is not None:
        table.add_row("appends behind schedule, at most", f"{late:.2f} s")
    table.add_row(
        "decided and committed (first append → last commit)", f"{events / decided:,.0f} events/s"
    )
    table.add_row("decisions committed", f"{decisions:,}")
    table.add_row(
        "events decided / lost / decided twice",
        f"{audited:,} / {events - audited:,} / {rows - audited:,}",
    )
    table.add_row(
        "events actioned / suppressed / needing no action (sum)",
        f"{actioned:,} / {suppressed:,} / {no_action:,} ({actioned + suppressed + no_action:,})",
    )
    table.add_row(
        "ledger size on PostgreSQL (tables, indexes, TOAST)",
        f"{size / 2**20:,.1f} MB, {size / max(1, audited) / 1024:,.1f} KB per event",
    )
    table.add_row(
        "errors: dead letters / failures on entries / consumers exited",
        f"{dead} / {failed} / {exited}",
    )
    table.add_row(
        "consumer RSS at start → end (MB)",
        ", ".join(f"{a:.0f} → {b:.0f}" for a, b in zip(rss_start, rss_end, strict=True)),
    )
    console.print(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4_000)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rate", type=float, help="events/s on a fixed schedule (load test)")
    parser.add_argument("--seconds", type=float, help="with --rate: how long; sets --events")
    parser.add_argument(
        "--alarm-every", type=int, default=0, help="every Nth event an alarm onset (0: none)"
    )
    args = parser.parse_args(argv)
    if (args.rate is None) != (args.seconds is None):
        parser.error("--rate and --seconds go together")
    events = round(args.rate * args.seconds) if args.rate else args.events
    run(events, args.consumers, args.customers, args.batch, Console(), args.rate, args.alarm_every)


if __name__ == "__main__":
    main()
