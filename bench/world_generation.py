"""World generation: wall time and peak memory at 10k and 100k customers x 90 days.

Each run is a fresh process, so peak RSS is that run's own. Targets (2 cores): 100k x 90 days
in <= 60 s and <= 4 GB, with cost growing linearly in customers.

    python -m bench.world_generation [--repeats 3] [--sizes 10000 100000] [--days 90]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

from rich.console import Console
from rich.table import Table

CHILD = """
import json, sys, time
from pathlib import Path
from closedloop.world.config import WorldConfig
from closedloop.world.simulate import simulate
from closedloop.world.store import write_world

def peak_mb():
    # VmHWM is this process's own high-water mark; ru_maxrss would carry the parent's over exec
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

customers, days, folder = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
began = time.perf_counter()
world = simulate(WorldConfig(customers=customers, days=days, seed=1))
simulated = time.perf_counter()
write_world(world, folder)
done = time.perf_counter()
print(json.dumps({
    "seconds": done - began,
    "simulate_seconds": simulated - began,
    "write_seconds": done - simulated,
    "peak_mb": peak_mb(),
    "rows": sum(world.summary.rows.values()),
}))
"""

TARGET_SECONDS = 60.0
TARGET_PEAK_MB = 4096.0


def run_once(customers: int, days: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(customers), str(days), f"{tmp}/world"],
            check=True,
            capture_output=True,
            text=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--days", type=int, default=90)
    args = parser.parse_args(argv)
    console = Console(width=120)
    table = Table(title=f"world generation, {args.days} days, median of {args.repeats} runs")
    for column in (
        "customers",
        "rows",
        "total s",
        "simulate s",
        "write s",
        "peak MB",
        "µs/cust-day",
    ):
        table.add_column(column, justify="right")
    medians: dict[int, dict[str, float]] = {}
    for customers in args.sizes:
        runs = [run_once(customers, args.days) for _ in range(args.repeats)]
        median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        medians[customers] = median
        table.add_row(
            f"{customers:,}",
            f"{median['rows']:,.0f}",
            f"{median['seconds']:.2f}",
            f"{median['simulate_seconds']:.2f}",
            f"{median['write_seconds']:.2f}",
            f"{median['peak_mb']:,.0f}",
            f"{1e6 * median['seconds'] / (customers * args.days):.2f}",
        )
    console.print(table)
    smallest, largest = min(medians), max(medians)
    if smallest != largest:
        growth = medians[largest]["seconds"] / medians[smallest]["seconds"]
        console.print(
            f"time grows {growth:.1f}x for {largest / smallest:.1f}x customers "
            f"(linearity ratio {growth / (largest / smallest):.2f}; 1.00 is linear)"
        )
    big = medians[largest]
    verdict = big["seconds"] <= TARGET_SECONDS and big["peak_mb"] <= TARGET_PEAK_MB
    console.print(
        f"target at {largest:,} customers: <= {TARGET_SECONDS:.0f} s and "
        f"<= {TARGET_PEAK_MB:,.0f} MB -> {big['seconds']:.1f} s, {big['peak_mb']:,.0f} MB: "
        + ("met" if verdict else "MISSED")
    )


if __name__ == "__main__":
    main()
