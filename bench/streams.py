"""Event intake on the cluster profile: events appended to a Redis stream, decided and committed
to a PostgreSQL ledger by ``closedloop consume`` processes of one consumer group.

    python -m bench.streams [--events 4000] [--consumers 2] [--customers 2000] [--batch 200]

A small simulated world in a temporary home, its ledger in a throwaway schema of the local
PostgreSQL and its stream under a throwaway key of the local Redis (both removed at the end).
The consumers run with ``--no-models`` (rules at probability 0 only; model scoring is measured
by ``bench.serving``). Events are KPI degradations spread over the cells, each its own
incident, appended in chunks of 100 as ``POST /events`` appends them. Printed: how fast the
stream took them, how fast the consumers decided and committed them (first append to last
commit), and the ledger's accounting: events decided, lost, decided twice.
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


def make_events(cells: list[str], n: int) -> list[NetworkEvent]:
    return [
        NetworkEvent(
            event_id=f"bench-{i}", event_type=EventType.KPI_DEGRADATION,
            cell_id=cells[i % len(cells)], occurred_at=AT - timedelta(seconds=i),
            severity=Severity.MAJOR, metric="latency_ms", value=150.0 + i % 50, threshold=90.0,
        )
        for i in range(n)
    ]  # fmt: skip


def ledger_count(settings: Settings, sql: str) -> int:
    with psycopg.connect(DSN) as db:
        return int(db.execute(sql.replace("LEDGER", f'"{settings.ledger_schema}"')).fetchone()[0])


def run(events: int, consumers: int, customers: int, batch: int, console: Console) -> None:
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
        made = make_events(cells, events)
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
            began = time.perf_counter()
            for start in range(0, len(made), CHUNK):
                stream.append(made[start : start + CHUNK])
            appended = time.perf_counter() - began
            while ledger_count(settings, "SELECT COUNT(*) FROM LEDGER.events") < len(made):
                if time.perf_counter() - began > 600:
                    raise RuntimeError("the consumers did not finish within 10 minutes")
                time.sleep(0.05)
            decided = time.perf_counter() - began
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
        client.delete(*(settings.stream_key + s for s in ("", ":dead", ":errors")))
        client.close()
        stream.close()
        with psycopg.connect(DSN, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{settings.ledger_schema}" CASCADE')
    table = Table(title=f"event stream: {events:,} events, {consumers} consumer(s), batch {batch}")
    for column in ("measure", "value"):
        table.add_column(column)
    table.add_row("appended to the stream", f"{events / appended:,.0f} events/s")
    table.add_row(
        "decided and committed (first append → last commit)", f"{events / decided:,.0f} events/s"
    )
    table.add_row("decisions committed", f"{decisions:,}")
    table.add_row(
        "events decided / lost / decided twice",
        f"{audited:,} / {events - audited:,} / {rows - audited:,}",
    )
    console.print(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4_000)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args(argv)
    run(args.events, args.consumers, args.customers, args.batch, Console())


if __name__ == "__main__":
    main()
