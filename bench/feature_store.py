"""Feature store: ingest + validate throughput, materialisation vs stock Feast, online lookups.

    python -m bench.feature_store [--customers 100000] [--days 90] [--repeats 1] [--lookups 20000]

1. ingest + validate: raw world -> normalised, validated, deduplicated offline store (rows/s);
2. materialisation of the same applied repository, our bulk path and ``FeatureStore.materialize``
   (what ``feast materialize`` runs) alternately, each in a fresh process on a fresh online
   store: wall time, peak memory and the ratio (target <= 0.2x the stock time, <= 1 GB);
3. in-process online lookup of one customer through ``churn_v1``: our direct reader and
   Feast's ``get_online_features`` side by side (target p99 <= 1 ms).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

PEAK = """
def peak_mb():
    # VmHWM is this process's own high-water mark; ru_maxrss would carry the parent's over exec
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""

PREPARE = (
    PEAK
    + """
import json, sys, time
from datetime import datetime
from pathlib import Path
from closedloop.world.config import WorldConfig
from closedloop.world.simulate import simulate
from closedloop.world.store import write_world
from features.ingest import ingest_world
from features.pipeline import build_features
home, customers, days = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
end = datetime.fromisoformat(sys.argv[4])
step = sys.argv[5]
began = time.perf_counter()
if step == "world":
    write_world(simulate(WorldConfig(customers=customers, days=days, seed=1)), home / "world")
    out = {}
elif step == "ingest":
    report = ingest_world(home / "world", home, end)
    out = {"rows": sum(t.read for t in report.tables.values()),
           "quarantined": sum(t.quarantined for t in report.tables.values())}
else:
    build_features(home, end)
    out = {}
print(json.dumps({**out, "seconds": time.perf_counter() - began, "peak_mb": peak_mb()}))
"""
)

MATERIALISE = (
    PEAK
    + """
import json, sys, time
from datetime import datetime
from pathlib import Path
from closedloop.settings import Settings
from features.pipeline import apply_repository, materialize
settings = Settings(home=Path(sys.argv[1]))
start, end = datetime.fromisoformat(sys.argv[2]), datetime.fromisoformat(sys.argv[3])
stock = sys.argv[4] == "stock"
apply_repository(settings)
began = time.perf_counter()
materialize(settings, start, end, stock)
print(json.dumps({"seconds": time.perf_counter() - began, "peak_mb": peak_mb()}))
"""
)


def _run(code: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--lookups", type=int, default=20_000)
    args = parser.parse_args(argv)
    console = Console(width=120)

    from closedloop.settings import Settings
    from closedloop.world.config import WorldConfig
    from features.online import open_reader
    from features.repo import service_features
    from features.store import open_store

    home = Path(tempfile.mkdtemp(prefix="bench-features-"))
    config = WorldConfig(customers=args.customers, days=args.days, seed=1)
    end = datetime.combine(config.start, datetime.min.time(), UTC) + timedelta(days=args.days)
    start = end - timedelta(days=args.days + 1)
    try:
        steps = {
            step: _run(
                PREPARE, str(home), str(args.customers), str(args.days), end.isoformat(), step
            )
            for step in ("world", "ingest", "build")
        }
        ingest = steps["ingest"]
        console.print(
            f"ingest + validate: {ingest['rows']:,} rows in {ingest['seconds']:.1f} s = "
            f"{ingest['rows'] / ingest['seconds']:,.0f} rows/s, peak {ingest['peak_mb']:,.0f} MB "
            f"({ingest['quarantined']:,} quarantined)"
        )
        console.print(f"feature build: {steps['build']['seconds']:.1f} s")

        results: dict[str, list[dict]] = {"closedloop bulk": [], "feast materialize": []}
        for _ in range(args.repeats):
            for name, mode in (("closedloop bulk", "bulk"), ("feast materialize", "stock")):
                shutil.rmtree(home / "feast", ignore_errors=True)
                results[name].append(
                    _run(MATERIALISE, str(home), start.isoformat(), end.isoformat(), mode)
                )
        settings = Settings(home=home)
        store = open_store(settings)
        service = store.get_feature_service("churn_v1")
        features = len(service_features(service))
        table = Table(title=f"materialisation, {args.customers:,} customers x {features} features")
        for column in ("path", "median s", "peak MB"):
            table.add_column(column, justify="right")
        medians = {}
        for name, runs in results.items():
            medians[name] = statistics.median(r["seconds"] for r in runs)
            peak = max(r["peak_mb"] for r in runs)
            table.add_row(name, f"{medians[name]:.2f}", f"{peak:,.0f}")
        console.print(table)
        ratio = medians["closedloop bulk"] / medians["feast materialize"]
        console.print(f"ratio closedloop / feast: {ratio:.3f} (target <= 0.2)")

        ids = [f"cus_{i:07d}" for i in range(1, args.customers + 1)]
        rng = random.Random(0)
        reader = open_reader(home, "churn_v1")
        ours = []
        for customer in rng.choices(ids, k=args.lookups):
            began = time.perf_counter()
            reader.read(customer, end)
            ours.append(time.perf_counter() - began)
        theirs = []
        for customer in rng.choices(ids, k=max(200, args.lookups // 20)):
            began = time.perf_counter()
            store.get_online_features(features=service, entity_rows=[{"customer_id": customer}])
            theirs.append(time.perf_counter() - began)
        lookups = Table(
            title=f"online lookup of one customer through churn_v1 ({features} features)"
        )
        for column in ("path", "lookups", "p50 ms", "p99 ms"):
            lookups.add_column(column, justify="right")
        for name, samples in (("closedloop reader", ours), ("feast get_online_features", theirs)):
            lookups.add_row(
                name,
                f"{len(samples):,}",
                f"{1000 * _percentile(samples, 0.5):.3f}",
                f"{1000 * _percentile(samples, 0.99):.3f}",
            )
        console.print(lookups)
        console.print(
            f"p99 ratio closedloop / feast: "
            f"{_percentile(ours, 0.99) / _percentile(theirs, 0.99):.3f} (target p99 <= 1 ms)"
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
