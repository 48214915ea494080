"""Drift on large windows: what ``closedloop monitor`` runs against Evidently's stock preset.

    python -m bench.monitoring [--rows 1000000] [--repeats 3] [--sample-rows 20000]

A reference of ROWS rows × 20 features (17 numeric, 3 text) and the predicted probability is
written to Parquet, and a current window of as many rows as a prediction log part (with
``scored_at`` and ``model_version``) under a home folder; some features drift a lot, some a
little, most not at all. Each side runs in a fresh process, REPEATS times, and reports its wall
time (reading included) and its own peak memory:

- stock: both files read whole, ``Report([DataDriftPreset()])`` on the full data;
- monitor: the monitor's own path: ``monitoring.pipeline.log_window`` finds the window in the
  prediction log, ``window_reports`` reads a seeded sample of each side column by column
  (``monitoring.sampling.PartsWindow``), runs the drift and quality reports on the samples and
  counts missing values over every row.

Prints medians, the time ratio (target <= 0.1), peak memory (target <= 0.5 GB) and whether the
two agree on every column's drift flag.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

NUMERIC = 17
TEXT = 3
# standard-deviation shifts of the current window's numeric features: 0 is no drift
SHIFTS = (0.0,) * 11 + (0.02, 0.04, 0.3, 0.6, 1.0, 2.0)
# probability moved from the first level to the second, per text feature
TEXT_SHIFTS = (0.0, 0.02, 0.3)
START = pd.Timestamp("2026-03-01", tz="UTC")
VERSION = "1"


def window(rows: int, seed: int, drifted: bool) -> pd.DataFrame:
    """One window of synthetic features; ``drifted`` applies the shifts."""
    rng = np.random.default_rng(seed)
    frame = {}
    for i, shift in enumerate(SHIFTS):
        values = rng.gamma(2.0 + i % 3, 10.0, rows) if i % 2 else rng.normal(50, 10, rows)
        frame[f"num_{i:02d}"] = values + (shift * values.std() if drifted else 0.0)
    for i, shift in enumerate(TEXT_SHIFTS):
        weights = np.array([0.4, 0.3, 0.2, 0.1])
        if drifted:
            weights = weights + np.array([-shift, shift, 0, 0])
        frame[f"text_{i}"] = rng.choice(["a", "b", "c", "d"], rows, p=weights / weights.sum())
    frame["probability"] = rng.beta(2, 8, rows)
    return pd.DataFrame(frame)


def log_part(frame: pd.DataFrame) -> pd.DataFrame:
    """A window as the prediction log holds it: stamped over a week, one model version."""
    stamps = START + pd.to_timedelta(np.arange(len(frame)) * (7 * 86_400 / len(frame)), unit="s")
    return frame.assign(scored_at=stamps.floor("ms"), model_version=VERSION)


def _current(folder: Path) -> Path:
    return folder / "home" / "predictions" / "bench" / "part-0.parquet"


def _flags_of(snapshot) -> dict[str, bool]:
    """Per column: did the stock report's drift test fire (read by metric type and column)."""
    flags = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":ValueDrift"):
            flags[config["column"]] = float(metric["value"]) >= float(config["threshold"])
    return flags


def run_side(side: str, folder: Path, sample_rows: int) -> dict:
    """One side, timed from reading the files to the flags (imports excluded)."""
    from evidently import Dataset, Report
    from evidently.presets import DataDriftPreset

    from closedloop.settings import Settings
    from monitoring.config import MonitorConfig
    from monitoring.pipeline import ReportColumns, log_window, window_reports
    from monitoring.sampling import PartsWindow

    columns = [*(f"num_{i:02d}" for i in range(NUMERIC)), *(f"text_{i}" for i in range(TEXT))]
    started = time.perf_counter()
    if side == "stock":
        reference = pd.read_parquet(folder / "reference.parquet")
        current = pd.read_parquet(_current(folder), columns=list(reference.columns))
        snapshot = Report([DataDriftPreset()]).run(
            Dataset.from_pandas(current), Dataset.from_pandas(reference)
        )
        flags = _flags_of(snapshot)
    else:
        settings = Settings(home=folder / "home")
        window = log_window(settings, "bench", VERSION, START, START + pd.Timedelta(days=7))
        reference = PartsWindow.whole(folder / "reference.parquet")
        features = ReportColumns(columns, [c for c in columns if c.startswith("text_")])
        config = MonitorConfig(sample_rows=sample_rows)
        drift = window_reports(reference, window, features, config).drift
        flags = {c.column: c.drifted for c in [*drift.columns, drift.prediction] if c}
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_mb": _peak_kb() / 1024, "flags": flags}


def _peak_kb() -> int:
    """This process's own peak resident memory (VmHWM): ``ru_maxrss`` of a child started by fork
    and exec also counts the parent's resident memory at the fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _in_child(side: str, folder: Path, sample_rows: int) -> dict:
    command = [sys.executable, "-m", "bench.monitoring", "--side", side, "--data", str(folder)]
    command += ["--sample-rows", str(sample_rows)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample-rows", type=int, default=20_000)
    parser.add_argument("--side", choices=("stock", "monitor"), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        print(json.dumps(run_side(args.side, args.data, args.sample_rows)))
        return

    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        window(args.rows, 1, drifted=False).to_parquet(folder / "reference.parquet")
        _current(folder).parent.mkdir(parents=True)
        log_part(window(args.rows, 2, drifted=True)).to_parquet(_current(folder))
        runs: dict[str, list[dict]] = {"monitor": [], "stock": []}
        for _ in range(args.repeats):
            for side in runs:
                runs[side].append(_in_child(side, folder, args.sample_rows))

    table = Table(
        title=f"drift on {args.rows:,} rows × {NUMERIC + TEXT} features and the probability, "
        f"median of {args.repeats} (monitor sample: {args.sample_rows:,} rows per window)"
    )
    for column in ("side", "median s", "peak memory MB", "drifted features"):
        table.add_column(column)
    medians = {}
    for side, results in runs.items():
        medians[side] = statistics.median(r["seconds"] for r in results)
        peak = max(r["peak_mb"] for r in results)
        drifted = sum(results[0]["flags"].values())
        table.add_row(side, f"{medians[side]:.2f}", f"{peak:,.0f}", str(drifted))
    console.print(table)

    ours, theirs = runs["monitor"][0]["flags"], runs["stock"][0]["flags"]
    flags = Table(title="drift flag per feature")
    for column in ("feature", "monitor", "stock", "agree"):
        flags.add_column(column)
    for name in theirs:
        agree = ours.get(name) == theirs[name]
        verdict = "yes" if agree else "[red]NO[/]"
        flags.add_row(name, str(ours.get(name)), str(theirs[name]), verdict)
    console.print(flags)
    agreeing = sum(ours.get(name) == flag for name, flag in theirs.items())
    stable = all(r["flags"] == ours for r in runs["monitor"])
    ratio = medians["monitor"] / medians["stock"]
    peak = max(r["peak_mb"] for r in runs["monitor"])
    console.print(
        f"time ratio monitor/stock: {ratio:.3f} (target <= 0.1); monitor peak {peak:,.0f} MB "
        f"(target <= 512); flags agree on {agreeing}/{len(theirs)} features; "
        f"monitor flags identical across repeats: {stable}"
    )


if __name__ == "__main__":
    main()
