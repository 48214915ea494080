"""Online feature reads, the part of scoring the profile changes: Feast's Redis store (cluster)
beside its SQLite file (embedded), each read the way serving reads it.

    python -m bench.online_store [--customers 2000] [--reads 300] [--rounds 5] [--redis-db 9]

One small simulated world in a temporary home, materialised into both stores: SQLite under the
home, Redis in database ``--redis-db`` of the local server (it must be empty; it is emptied at
the end) with the Feast registry in a throwaway PostgreSQL database. Each round reads the churn
service's features for READS random customers from each store, one read at a time, alternating
the stores; printed: the medians over rounds of p50 and p99 per store and the ratio of the p99s
(target: Redis <= 1.5x SQLite). The model's own scoring, equal on both, is ``bench.serving``'s.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import redis
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from closedloop.settings import Settings
from closedloop.world.config import WorldConfig
from closedloop.world.simulate import simulate
from closedloop.world.store import write_world
from features.backends import online_store
from features.ingest import ingest_world
from features.offline import OfflineStore
from features.pipeline import apply_repository, build_features, materialize

SERVER = "postgresql://postgres@127.0.0.1:5432"
TARGET_RATIO = 1.5
SERVICE = "churn_v1"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[int(share * (len(ordered) - 1))]


def run(customers: int, reads: int, rounds: int, redis_db: int, console: Console) -> None:
    url = f"redis://127.0.0.1:6379/{redis_db}"
    client = redis.Redis.from_url(url)
    if client.dbsize():
        raise SystemExit(f"redis database {redis_db} is not empty; name another (--redis-db)")
    database = f"bench_online_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    try:
        with tempfile.TemporaryDirectory(prefix="bench-online-") as folder:
            home = Path(folder)
            config = WorldConfig(customers=customers, days=10, seed=3, customers_per_cell=50)
            end = datetime.combine(config.start, datetime.min.time(), UTC) + timedelta(days=10)
            write_world(simulate(config), home / "world")
            ingest_world(home / "world", home, end)
            build_features(home, end)
            embedded = Settings(home=home)
            cluster = Settings(
                home=home,
                profile="cluster",
                postgres_dsn=SecretStr(f"{SERVER}/{database}"),
                redis_url=SecretStr(url),
            )
            for settings in (embedded, cluster):
                apply_repository(settings)
                materialize(settings, end - timedelta(days=11), end, stock=False)
            ids = OfflineStore(home).read("customers").customer_id.tolist()
            stores = {
                "sqlite": online_store(embedded).readers()[SERVICE],
                "redis": online_store(cluster).readers()[SERVICE],
            }
            pick = random.Random(7)
            found: dict[str, dict[str, list[float]]] = {n: {"p50": [], "p99": []} for n in stores}
            for _ in range(rounds):
                times: dict[str, list[float]] = {name: [] for name in stores}
                for entity in pick.choices(ids, k=reads):
                    known = set()
                    for name, reader in stores.items():
                        began = time.perf_counter()
                        row = reader.read(entity, end)
                        times[name].append(time.perf_counter() - began)
                        known.add(row.known)
                    if len(known) > 1:
                        raise RuntimeError(f"the stores disagree on whether {entity} is known")
                for name, taken in times.items():
                    found[name]["p50"].append(1000 * statistics.median(taken))
                    found[name]["p99"].append(1000 * percentile(taken, 0.99))
            for reader in stores.values():
                reader.close()
    finally:
        client.flushdb()
        client.close()
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
    load = Path("/proc/loadavg").read_text().split()[0]
    table = Table(
        title=f"online feature reads of {SERVICE}, {reads} per round, median of {rounds} rounds "
        f"(load average {load})"
    )
    for column in ("store", "p50", "p99"):
        table.add_column(column)
    median = {n: {k: statistics.median(v) for k, v in f.items()} for n, f in found.items()}
    for name in stores:
        table.add_row(name, f"{median[name]['p50']:.2f} ms", f"{median[name]['p99']:.2f} ms")
    ratio = median["redis"]["p99"] / median["sqlite"]["p99"]
    met = "met" if ratio <= TARGET_RATIO else "NOT met"
    table.add_row("redis / sqlite", f"{median['redis']['p50'] / median['sqlite']['p50']:.2f}x",
                  f"{ratio:.2f}x (target <= {TARGET_RATIO}x: {met})")  # fmt: skip
    console.print(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis-db", type=int, default=9)
    args = parser.parse_args(argv)
    run(args.customers, args.reads, args.rounds, args.redis_db, Console())


if __name__ == "__main__":
    main()
