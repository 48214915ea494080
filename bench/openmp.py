"""How OpenMP's waiting changes LightGBM's cost, idle and busy: ``python -m bench.openmp``.

Each setting runs in a child process of its own (OpenMP reads it when LightGBM's runtime
loads): a fit with the churn model's settings from params.yaml, then one-row predictions as the
service makes them. Settings: libgomp's default (a long spin), closedloop's default (a short
spin, ``GOMP_SPINCOUNT``) and ``OMP_WAIT_POLICY=passive`` (no spin). Each is measured on the
machine as it is, then with ``--busy`` busy loops running beside it (a machine whose cores are
taken by other work), and the load average is printed with each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from closedloop.openmp import SPIN_COUNT

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
SETTINGS = {
    "libgomp default": {},
    "closedloop default": {"GOMP_SPINCOUNT": SPIN_COUNT},
    "passive": {"OMP_WAIT_POLICY": "passive"},
}
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


def run(setting: dict[str, str], rows: int) -> dict[str, float]:
    """One child's figures under ``setting`` alone (the child loads LightGBM before it imports
    anything of closedloop's, so closedloop's default applies only where the setting names it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(setting)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(rows), str(PARAMS)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextmanager
def busy_loops(count: int):
    """``count`` processes spinning on the CPU for as long as the block runs."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def measure(rows: int, rounds: int) -> None:
    for name, setting in SETTINGS.items():
        runs = [run(setting, rows) for _ in range(rounds)]
        m = {key: sorted(r[key] for r in runs)[len(runs) // 2] for key in runs[0]}
        print(
            f"  {name:19} fit {m['fit_s']:7.2f} s   one-row predict p50 {m['p50_ms']:7.3f} ms  "
            f"p99 {m['p99_ms']:7.3f} ms   (load average {os.getloadavg()[0]:.2f})"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000, help="training rows")
    parser.add_argument("--rounds", type=int, default=3, help="runs per setting (median printed)")
    parser.add_argument("--busy", type=int, default=6, help="busy loops beside the second pass")
    args = parser.parse_args(argv)
    print(f"OpenMP waiting, LightGBM ({args.rows:,} rows, 200 trees, medians of {args.rounds})")
    print(f" the machine as it is ({os.cpu_count()} cores):")
    measure(args.rows, args.rounds)
    print(f" with {args.busy} busy loops beside it:")
    with busy_loops(args.busy):
        measure(args.rows, args.rounds)


if __name__ == "__main__":
    main()
