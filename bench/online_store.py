"""Scoring from the online store the profile chooses: Feast's Redis store (cluster) beside its
SQLite file (embedded), each read the way serving reads it.

    python -m bench.online_store [--customers 2000] [--reads 300] [--rounds 5] [--redis-db 9]

One small simulated world in a temporary home, materialised into both stores: SQLite under the
home, Redis in database ``--redis-db`` of the local server (it must be empty; it is emptied at
the end) with the Feast registry in a throwaway PostgreSQL database; a churn model is trained
on it (one process, embedded registry). Three readers of the churn service: SQLite's; Redis
asked at every read (one HMGET); Redis as the service reads it (``serve_feature_cache``: replies
kept in the process until Redis reports their key written). Each reader first reads every
customer once (a service that has answered for each); then each round takes READS random
customers and, for each, in a shuffled order: the raw read (``reader.read``) and the scoring
path of the service's ``/churn/score`` without HTTP (``Scorer.by_ids``: the feature read, stale
flags and the model's probability, no reasons) through every reader, whose answers must agree.
Printed: the medians over rounds of p50 and p99 per reader and path, the ratios to SQLite
(target: the service's scoring path p99 <= 1.5x) and the machine's load average before and
after. No write happens during the rounds, so every kept reply stays valid.
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
from serving.champion import Champions, ModelCache
from serving.scoring import Scorer
from training.config import LightGBMParams, churn_defaults
from training.pipeline import train
from training.registry import point_at

SERVER = "postgresql://postgres@127.0.0.1:5432"
TARGET_RATIO = 1.5
SERVICE = "churn_v1"
DAYS = 45  # enough for the churn label's 30-day horizon
FAST = LightGBMParams(num_boost_round=150, early_stopping_rounds=20)
PATHS = {"read": "feature read", "score": "scoring path (read + predict)"}
ASKS = "redis, every read asks"
KEPT = "redis, kept replies"  # the service's reader (serve_feature_cache)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[int(share * (len(ordered) - 1))]


def timed(call, *args):
    """(seconds ``call(*args)`` took, its answer)."""
    began = time.perf_counter()
    answer = call(*args)
    return time.perf_counter() - began, answer


def run(customers: int, reads: int, rounds: int, redis_db: int, console: Console) -> None:
    url = f"redis://127.0.0.1:6379/{redis_db}"
    client = redis.Redis.from_url(url)
    if client.dbsize():
        raise SystemExit(f"redis database {redis_db} is not empty; name another (--redis-db)")
    loads = [Path("/proc/loadavg").read_text().split()[0]]
    database = f"bench_online_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    try:
        with tempfile.TemporaryDirectory(prefix="bench-online-") as folder:
            home = Path(folder)
            config = WorldConfig(customers=customers, days=DAYS, seed=3, customers_per_cell=50)
            end = datetime.combine(config.start, datetime.min.time(), UTC) + timedelta(days=DAYS)
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
                materialize(settings, end - timedelta(days=DAYS + 1), end, stock=False)
            trained = train(
                embedded, "churn", churn_defaults().model_copy(update={"lightgbm": FAST})
            )
            point_at(embedded)
            champions = Champions(["churn"], ModelCache(embedded.paths.model_cache))
            champions.refresh()
            ids = OfflineStore(home).read("customers").customer_id.tolist()
            readers = {
                "sqlite": online_store(embedded).readers()[SERVICE],
                ASKS: online_store(cluster).readers()[SERVICE],
                KEPT: online_store(cluster).readers(cluster.serve_feature_cache)[SERVICE],
            }
            scorers = {
                name: Scorer(champions, {SERVICE: reader}, lambda: end)
                for name, reader in readers.items()
            }
            for reader in readers.values():  # a service that has answered for each once
                reader.read_many(ids, end)
            console.print(
                f"churn model v{trained.version}; {len(ids):,} customers, each read once by "
                f"every reader before the rounds; load average {loads[0]} before the reads"
            )
            pick = random.Random(7)
            found = {(path, name): {"p50": [], "p99": []} for path in PATHS for name in readers}
            for _ in range(rounds):
                times: dict[tuple[str, str], list[float]] = {key: [] for key in found}
                for entity in pick.choices(ids, k=reads):
                    order = list(found)
                    pick.shuffle(order)  # no store or path always right after another
                    answers: dict[tuple[str, str], object] = {}
                    for path, name in order:
                        if path == "read":
                            taken, row = timed(readers[name].read, entity, end)
                            answers[path, name] = row.values
                        else:
                            taken, scored = timed(scorers[name].by_ids, "churn", [entity], 0)
                            answers[path, name] = scored.scores[0].probability
                        times[path, name].append(taken)
                    for path in PATHS:
                        if len({repr(answers[path, name]) for name in readers}) > 1:
                            raise RuntimeError(f"the readers disagree on {entity} ({path})")
                for key, taken in times.items():
                    found[key]["p50"].append(1000 * statistics.median(taken))
                    found[key]["p99"].append(1000 * percentile(taken, 0.99))
            loads.append(Path("/proc/loadavg").read_text().split()[0])
            for reader in readers.values():
                reader.close()
    finally:
        client.flushdb()
        client.close()
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
    table = Table(
        title=f"churn through {SERVICE}, one customer at a time, {reads} per round, median of "
        f"{rounds} rounds (load average {loads[0]} before, {loads[-1]} after)"
    )
    for column in ("path", "reader", "p50", "p99"):
        table.add_column(column)
    median = {key: {k: statistics.median(v) for k, v in f.items()} for key, f in found.items()}
    for path, what in PATHS.items():
        for name in (*readers, *(f"{name} / sqlite" for name in (ASKS, KEPT))):
            if name in readers:
                figures = median[path, name]
                table.add_row(what, name, f"{figures['p50']:.3f} ms", f"{figures['p99']:.3f} ms")
                continue
            ours, theirs = median[path, name.removesuffix(" / sqlite")], median[path, "sqlite"]
            ratio = ours["p99"] / theirs["p99"]
            verdict = ""
            if path == "score" and name.startswith(KEPT):
                met = "met" if ratio <= TARGET_RATIO else "NOT met"
                verdict = f" (target <= {TARGET_RATIO}x: {met})"
            table.add_row(what, name, f"{ours['p50'] / theirs['p50']:.2f}x",
                          f"{ratio:.2f}x{verdict}")  # fmt: skip
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
