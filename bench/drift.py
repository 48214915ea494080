"""Monitoring that does not cry wolf: weekly runs of both models, a calm world and a drifting one.

    python -m bench.drift [--customers 1500] [--days 180] [--full] [--only calm|drift]
        [--model churn|fault] [--params params.yaml] [--home DIR [--reuse]]

Each world is generated, ingested and built in its own home; the churn and fault champions
are trained on what is known by ``--train-days``, then every week each model's window is
batch-scored into the prediction log and monitored (``monitoring.pipeline.monitor``) with the
``monitor`` section of ``params.yaml``, retraining through the gate when the trigger fires.
``--reuse`` keeps a world already prepared under ``--home`` (generated, ingested, built) and
starts its models, logs and monitoring afresh.

- calm: no drift injected; the target is 0 retrain triggers per model.
- drift: on ``--change-day`` aurora's firmware reports latency and loss ×10 (fault) and prices
  rise by a quarter in one region (churn, ``closedloop.world.config.PriceChange``); the target
  is a trigger within 2 windows of the window the change falls in, and the retrained champion
  better than the first on the days after its retraining (PR AUC on snapshots whose labels are
  known at the world's end, neither model trained on them).

Prints one table per world and the drift table: change window, trigger window, retrain window,
PR AUC of the first and the final champion on the days after.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from closedloop.params import load_params
from closedloop.settings import Settings
from closedloop.world.config import Band, Drift, FirmwareUpdate, PriceChange, WorldConfig
from monitoring.config import MonitorConfig
from training.config import GateConfig, LightGBMParams, TrainConfig, churn_defaults, fault_defaults

MODELS = ("churn", "fault")
PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
FAST = LightGBMParams(num_boost_round=200, early_stopping_rounds=20)
# a third of faults strike without warning: the fault gate keeps the PR AUC lift bar and lowers
# the ROC AUC bar to 0.5, as in the demo's drift episode (monitoring/episode.py)
TRAINING: dict[str, TrainConfig] = {
    "churn": churn_defaults().model_copy(update={"lightgbm": FAST}),
    "fault": fault_defaults().model_copy(
        update={"lightgbm": FAST, "gate": GateConfig(min_roc_auc=0.5)}
    ),
}


def world(customers: int, days: int, change_day: int | None, seed: int) -> WorldConfig:
    """A world of ``customers`` with ten customers per cell; drift from ``change_day`` if set."""
    drift = Drift()
    if change_day is not None:
        drift = Drift(
            firmware=FirmwareUpdate(
                vendor="aurora", day=change_day, latency_factor=10, loss_factor=10
            ),
            price=PriceChange(region="central", day=change_day, factor=1.25),
        )
    return WorldConfig(
        customers=customers,
        days=days,
        seed=seed,
        customers_per_cell=10,
        incident_rate=0.02,
        incident_band=Band(low=0.01, high=0.03),
        drift=drift,
    )


@dataclass
class ModelRun:
    """What happened to one model over the weeks of one world."""

    windows: list[datetime]
    triggers: list[int]  # indexes of windows whose trigger fired
    held: list[int]
    retrained: list[int]
    promoted: list[int]
    first_version: str = ""
    final_version: str = ""
    pr_auc_first: float | None = None
    pr_auc_final: float | None = None
    after: str = ""
    evidence: str = ""  # what the first trigger or hold rested on


def _judged(summary) -> str:
    """The matured metric against its floor, beside the champion's test figure."""
    performance = summary.performance
    if performance is None or performance.floor is None:
        return "no matured verdict"
    metric = performance.metric
    value, test = performance.metrics[metric], performance.champion_test.get(metric, float("nan"))
    return f"matured {metric} {value:.3f} (floor {performance.floor:.3f}; test {test:.3f})"


def _evidence(summary) -> str:
    """The drifted features (severe ones marked) and the matured metric against its floor."""
    drift = summary.drift
    marked = [f"{c}!" if c in drift.severe else c for c in drift.drifted_columns]
    if drift.prediction is not None and drift.prediction.drifted:
        marked.append("probability")
    found = ", ".join(marked) or "no drift"
    performance = summary.performance
    if performance is not None and performance.below_floor:
        value = performance.metrics[performance.metric]
        found += f"; {performance.metric} {value:.3f} < floor {performance.floor:.3f}"
    return found


def prepared(settings: Settings, config: WorldConfig, reuse: bool) -> None:
    """The world in the settings' home, generated, ingested and built; with ``reuse`` one found
    there is kept (its repository applied again) and its models, logs and runs are cleared."""
    from features.pipeline import apply_repository
    from monitoring import episode

    home = settings.home
    if not (reuse and settings.paths.customer_daily.exists()):
        episode.prepare(settings, config)
        return
    for folder in ("mlflow", "metrics", "compiled", "serving", "predictions", "monitoring"):
        shutil.rmtree(home / folder, ignore_errors=True)
    apply_repository(settings)


def run_world(
    home: Path,
    config: WorldConfig,
    train_days: int,
    monitoring: MonitorConfig,
    models: tuple[str, ...],
    reuse: bool,
    console: Console,
) -> dict:
    """Prepare the world, train the champions, monitor every week; one ModelRun per model."""
    from monitoring.pipeline import load_champion, monitor, score_window

    settings = Settings(home=home)
    started = time.perf_counter()
    prepared(settings, config, reuse)
    start = datetime.combine(config.start, datetime.min.time(), UTC)
    end_of_world = start + timedelta(days=config.days)
    runs: dict[str, ModelRun] = {}
    for target in models:
        first = _train(settings, target, start + timedelta(days=train_days))
        run = ModelRun([], [], [], [], [], first_version=first)
        week = start + timedelta(days=train_days)
        while week + timedelta(days=monitoring.window_days) <= end_of_world:
            week += timedelta(days=monitoring.window_days)
            score_window(settings, target, week - timedelta(days=monitoring.window_days), week)
            summary = monitor(settings, target, monitoring, week, TRAINING[target])
            index = len(run.windows)
            run.windows.append(week)
            if summary.trigger.retrain:
                run.triggers.append(index)
            if summary.trigger.held:
                run.held.append(index)
            if (summary.trigger.retrain or summary.trigger.held) and not run.evidence:
                run.evidence = _evidence(summary)
            if summary.retrain is not None and summary.retrain.retrained:
                run.retrained.append(index)
                if summary.retrain.promoted:
                    run.promoted.append(index)
            prediction = summary.drift.prediction
            verdict = (
                "RETRAIN" if summary.trigger.retrain else "held" if summary.trigger.held else "-"
            )
            console.print(
                f"  {target} {week:%Y-%m-%d}: {summary.drift.drifted_share:.0%} of compared "
                f"features drifted{' (window drifted)' if summary.drift.drifted else ''}, "
                f"prediction {prediction.score if prediction else float('nan'):.3f}, "
                f"{_judged(summary)}: {verdict}"
            )
        run.final_version = load_champion(settings, target).version
        if run.retrained:
            _compare(settings, target, run, run.windows[run.retrained[0]])
        runs[target] = run
    console.print(f"  {time.perf_counter() - started:.0f} s")
    return runs


def _train(settings: Settings, target: str, until: datetime) -> str:
    from training.pipeline import train

    return train(settings, target, TRAINING[target], until=until).version


def _compare(settings: Settings, target: str, run: ModelRun, retrained_at: datetime) -> None:
    """PR AUC of the first and the final champion on the snapshots after the first retraining
    whose labels are known at the world's end."""
    from training import registry
    from training.evaluate import evaluate
    from training.pipeline import training_set

    config = TRAINING[target]
    data = training_set(settings, target, config)
    held = data[data.event_timestamp >= retrained_at]
    labels = held["label"].to_numpy()
    scores = {
        version: registry.load_version(registry.model_version(target, version)).model.score(held)
        for version in {run.first_version, run.final_version}
    }
    metric = {
        v: evaluate(labels, s, config.action_budget).metrics["pr_auc"] for v, s in scores.items()
    }
    run.pr_auc_first, run.pr_auc_final = metric[run.first_version], metric[run.final_version]
    run.after = (
        f"{held.event_timestamp.min():%Y-%m-%d} .. {held.event_timestamp.max():%Y-%m-%d} "
        f"({len(held):,} rows, {int(labels.sum()):,} positive)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_500)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--full", action="store_true", help="3,000 customers (the issue's size)")
    parser.add_argument("--train-days", type=int, default=56)
    parser.add_argument("--change-day", type=int, default=91)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", choices=("calm", "drift"))
    parser.add_argument("--model", choices=MODELS, help="monitor this model only")
    parser.add_argument("--params", type=Path, default=PARAMS, help="its monitor section is used")
    parser.add_argument("--home", type=Path, help="keep the worlds here (default: a temp folder)")
    parser.add_argument(
        "--reuse", action="store_true", help="keep a world already prepared under --home"
    )
    args = parser.parse_args(argv)
    monitoring = load_params(args.params).monitor
    models = (args.model,) if args.model else MODELS
    customers = 3_000 if args.full else args.customers
    console = Console()
    worlds = {
        "calm": world(customers, args.days, None, args.seed),
        "drift": world(customers, args.days, args.change_day, args.seed),
    }
    if args.only:
        worlds = {args.only: worlds[args.only]}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.home or Path(tmp)
        for name, config in worlds.items():
            console.print(
                f"{name}: {config.customers:,} customers, {config.cells} cells, {config.days} days"
            )
            results[name] = run_world(
                root / name, config, args.train_days, monitoring, models, args.reuse, console
            )

    if "calm" in results:
        table = Table(
            title=f"calm world: {customers:,} customers, {args.days} days, weekly windows"
        )
        for column in ("model", "windows", "retrain triggers", "held", "target", "first on"):
            table.add_column(column)
        for target, run in results["calm"].items():
            table.add_row(
                target,
                str(len(run.windows)),
                str(len(run.triggers)),
                str(len(run.held)),
                "0",
                run.evidence or "-",
            )
        console.print(table)
    if "drift" in results:
        table = Table(
            title=f"drift world: change on day {args.change_day} (fault: firmware ×10; "
            "churn: prices ×1.25 in central)"
        )
        for column in (
            "model", "change window", "first trigger or hold", "windows after", "retrained",
            "promoted", "PR AUC first", "PR AUC final", "compared on", "first trigger on",
        ):  # fmt: skip
            table.add_column(column)
        start = datetime.combine(worlds["drift"].start, datetime.min.time(), UTC)
        change = start + timedelta(days=args.change_day)
        for target, run in results["drift"].items():
            change_window = next(i for i, w in enumerate(run.windows) if w > change)
            first = min([*run.triggers, *run.held], default=None)
            late = "-" if first is None else str(first - change_window)
            table.add_row(
                target,
                f"{change_window} ({run.windows[change_window]:%m-%d})",
                "-" if first is None else f"{first} ({run.windows[first]:%m-%d})",
                late,
                ", ".join(str(i) for i in run.retrained) or "-",
                ", ".join(str(i) for i in run.promoted) or "-",
                "-" if run.pr_auc_first is None else f"{run.pr_auc_first:.4f}",
                "-" if run.pr_auc_final is None else f"{run.pr_auc_final:.4f}",
                run.after or "-",
                run.evidence or "-",
            )
        console.print(table)


if __name__ == "__main__":
    main()
