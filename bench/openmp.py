"""How OpenMP's wait policy changes LightGBM's cost: ``python -m bench.openmp``.

Each policy runs in a child process of its own (the policy is read when LightGBM's OpenMP
runtime loads): a fit with the churn model's settings from params.yaml, then one-row
predictions as the service makes them. Prints the load average, since the difference lives in
how busy the machine's cores are: on an idle machine both policies cost about the same.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
CHILD = """
import json, sys, time
from pathlib import Path
import lightgbm as lgb
import numpy as np
from closedloop.params import load_params

settings = load_params(Path(sys.argv[2])).train("churn").lightgbm
rows, features = int(sys.argv[1]), 34
rng = np.random.default_rng(0)
x = rng.normal(size=(rows, features))
y = (x[:, 0] + x[:, 1] * x[:, 2] + rng.normal(size=rows) > 0).astype(int)
params = {"objective": "binary", "learning_rate": settings.learning_rate,
          "num_leaves": settings.num_leaves, "verbose": -1}
start = time.perf_counter()
booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=200)
fit = time.perf_counter() - start
times = []
for i in range(300):
    start = time.perf_counter()
    booster.predict(x[i : i + 1])
    times.append(time.perf_counter() - start)
times.sort()
print(json.dumps({"fit_s": fit, "p50_ms": times[150] * 1e3, "p99_ms": times[296] * 1e3}))
"""


def run(policy: str, rows: int) -> dict[str, float]:
    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(rows), str(PARAMS)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000, help="training rows")
    parser.add_argument("--rounds", type=int, default=3, help="runs per policy (median printed)")
    args = parser.parse_args(argv)
    figures: dict[str, list[dict[str, float]]] = {"active": [], "passive": []}
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):
        for policy in figures:
            figures[policy].append(run(policy, args.rows))
    print(f"OpenMP wait policy, LightGBM ({args.rows:,} rows, 200 trees, medians of {args.rounds})")
    print(
        f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, "
        f"on {os.cpu_count()} cores"
    )
    medians = {
        policy: {key: sorted(run_[key] for run_ in runs)[len(runs) // 2] for key in runs[0]}
        for policy, runs in figures.items()
    }
    for policy, m in medians.items():
        print(
            f"  {policy:8} fit {m['fit_s']:8.2f} s   one-row predict "
            f"p50 {m['p50_ms']:7.3f} ms  p99 {m['p99_ms']:7.3f} ms"
        )
    active, passive = medians["active"], medians["passive"]
    print(
        f"  passive / active: fit {passive['fit_s'] / active['fit_s']:.2f}x, "
        f"predict p99 {passive['p99_ms'] / active['p99_ms']:.2f}x"
    )


if __name__ == "__main__":
    main()
