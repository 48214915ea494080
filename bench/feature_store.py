"""Feature store: ingest + validate throughput, materialisation vs stock Feast, online lookups.

    python -m bench.feature_store [--sizes 100000x90 500000x30] [--repeats 1] [--lookups 20000]

1. ingest + validate, then the feature build, at every size (customers x days): raw world ->
   normalised, validated, deduplicated offline store -> feature tables, each step in a fresh
   process: wall time, rows/s, CPU time and peak memory (target at every size: ingest peak
   <= 1.5 GB, flat in customers, at >= 250,000 rows/s);
2. at the first size, materialisation of the applied repository, our bulk path and
   ``FeatureStore.materialize`` (what ``feast materialize`` runs) alternately, each in a fresh
   process on a fresh online store: wall time, peak memory and the ratio (target <= 0.2x the
   stock time, <= 1 GB);
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
import json, resource, sys, time
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
def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
began, cpu = time.perf_counter(), cpu_seconds()
if step == "world":
    write_world(simulate(WorldConfig(customers=customers, days=days, seed=1)), home / "world")
    out = {}
elif step == "ingest":
    report = ingest_world(home / "world", home, end)
    out = {"rows": sum(t.read for t in report.tables.values()),
           "quarantined": sum(t.quarantined for t in report.tables.values())}
else:
    built = build_features(home, end)
    out = {"rows": built.customer_rows + built.cell_rows}
print(json.dumps({**out, "seconds": time.perf_counter() - began, "cpu_seconds": cpu_seconds() - cpu,
                  "peak_mb": peak_mb()}))
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


TARGET_PEAK_MB = 1536.0
TARGET_ROWS_PER_S = 250_000


def _size(text: str) -> tuple[int, int]:
    customers, days = text.lower().split("x")
    return int(customers), int(days)


def _prepare(home: Path, customers: int, days: int) -> tuple[datetime, dict[str, dict]]:
    """World, ingest and build of one size in ``home``, each step in a fresh process."""
    from closedloop.world.config import WorldConfig

    config = WorldConfig(customers=customers, days=days, seed=1)
    end = datetime.combine(config.start, datetime.min.time(), UTC) + timedelta(days=days)
    steps = {
        step: _run(PREPARE, str(home), str(customers), str(days), end.isoformat(), step)
        for step in ("world", "ingest", "build")
    }
    return end, steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_size, nargs="+", default=[(100_000, 90), (500_000, 30)])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--lookups", type=int, default=20_000)
    args = parser.parse_args(argv)
    console = Console(width=120)

    from closedloop.settings import Settings
    from features.online import open_reader
    from features.repo import service_features
    from features.store import open_store

    sizes = Table(
        title="ingest + validate and feature build, each step a fresh process "
        "(rows/s on the wall clock and per CPU second)"
    )
    for column in ("customers x days", "step", "rows", "wall s", "rows/s", "CPU s", "rows/CPU s"):
        sizes.add_column(column, justify="right")
    sizes.add_column("peak MB", justify="right")
    homes, ends, ingests = [], [], []
    try:
        for customers, days in args.sizes:
            home = Path(tempfile.mkdtemp(prefix="bench-features-"))
            homes.append(home)
            end, steps = _prepare(home, customers, days)
            ends.append(end)
            ingests.append(steps["ingest"])
            for step in ("ingest", "build"):
                figures = steps[step]
                sizes.add_row(
                    f"{customers:,} x {days}",
                    step,
                    f"{figures['rows']:,}",
                    f"{figures['seconds']:.1f}",
                    f"{figures['rows'] / figures['seconds']:,.0f}",
                    f"{figures['cpu_seconds']:.1f}",
                    f"{figures['rows'] / figures['cpu_seconds']:,.0f}",
                    f"{figures['peak_mb']:,.0f}",
                )
            if home != homes[0]:
                shutil.rmtree(home, ignore_errors=True)
        console.print(sizes)
        peaks = [i["peak_mb"] for i in ingests]
        slowest = min(i["rows"] / i["seconds"] for i in ingests)
        console.print(
            f"ingest peak {', '.join(f'{p:,.0f}' for p in peaks)} MB (target <= "
            f"{TARGET_PEAK_MB:,.0f} MB at every size: "
            + ("met" if max(peaks) <= TARGET_PEAK_MB else "MISSED")
            + f"); slowest {slowest:,.0f} rows/s (target >= {TARGET_ROWS_PER_S:,}: "
            + ("met" if slowest >= TARGET_ROWS_PER_S else "not met on this run")
            + ")"
        )
        home, end, (customers, days) = homes[0], ends[0], args.sizes[0]
        start = end - timedelta(days=days + 1)
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
        table = Table(title=f"materialisation, {customers:,} customers x {features} features")
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

        ids = [f"cus_{i:07d}" for i in range(1, customers + 1)]
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
        for home in homes:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
