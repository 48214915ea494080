"""CLI edge of the monitoring stage: ``closedloop monitor``, ``monitor-score``, ``monitor-history``.

Evidently, MLflow and Feast are imported inside the commands so ``closedloop --help`` stays quick.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from closedloop.models import ModelName
from closedloop.settings import Settings
from closedloop.terminal import (
    AsJson,
    UserError,
    console,
    emit_json,
    make_table,
    settings_of,
)
from features.commands import world_end
from monitoring.config import MonitorConfig
from training.config import TrainConfig

if TYPE_CHECKING:
    from monitoring.summary import MonitorSummary


def window_end(value: datetime | None, settings: Settings) -> datetime:
    """An option's instant in UTC; absent: the end of the world on disk."""
    if value is None:
        return world_end(settings)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def run_score(settings: Settings, target: str, start: datetime, end: datetime) -> None:
    """Batch-score a window with the champion into the prediction log."""
    from monitoring.pipeline import score_window

    try:
        scored = score_window(settings, target, start, end)
    except (LookupError, ValueError) as error:
        raise UserError(str(error)) from None
    console.print(
        f"{target} v{scored.champion.version}: scored {scored.rows:,} rows from "
        f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} with {scored.engine} into {scored.path}"
    )


def run_monitor(
    settings: Settings,
    target: str,
    config: MonitorConfig,
    end: datetime,
    training: TrainConfig | None,
) -> MonitorSummary:
    """One monitoring run, printed; ``training``: how to retrain on a breach (None: never)."""
    from monitoring.pipeline import monitor

    try:
        summary = monitor(settings, target, config, end, training)
    except (LookupError, ValueError) as error:
        raise UserError(str(error)) from None
    print_summary(summary)
    return summary


def print_summary(summary: MonitorSummary) -> None:
    drift = summary.drift
    table = Table(
        title=f"{summary.model} v{summary.champion_version}: {summary.window_start:%Y-%m-%d %H:%M}"
        f" .. {summary.window_end:%Y-%m-%d %H:%M} against {summary.reference_window}"
    )
    for column in ("feature", "kind", "method", "score", "threshold", "drifted"):
        table.add_column(column)
    compared = [c for c in drift.columns if c.compared]
    shown = [c for c in compared if c.drifted] or compared[:5]
    for c in [*shown, *([drift.prediction] if drift.prediction else []), *drift.classes]:
        flag = "[red]yes[/]" if c.drifted else "no"
        score = f"{c.score:.3f}" if c.score is not None else "-"
        table.add_row(escape(c.column), c.kind, c.method, score, f"{c.threshold:g}", flag)
    console.print(table)
    console.print(
        f"drifted features: {len(drift.drifted_columns)}/{len(compared)} compared "
        f"({drift.drifted_share:.0%}, policy {drift.drift_share:.0%})"
    )
    skipped = [c for c in drift.columns if not c.compared]
    if skipped:
        console.print(
            f"not compared ({len(skipped)}): trailing window not yet full: "
            + ", ".join(c.column for c in skipped)
        )
    performance = summary.performance
    if performance is not None and performance.metrics:
        value = performance.metrics.get(performance.metric, float("nan"))
        floor = "n/a" if performance.floor is None else f"{performance.floor:.4f}"
        if performance.baseline_until is not None:
            floor += f", set by the matured window to {performance.baseline_until:%Y-%m-%d}"
        if performance.classes:
            loss = performance.metrics["log_loss"]
            console.print(
                f"labelled rows: {performance.rows:,} in {len(performance.classes)} classes, the "
                f"rarest {performance.positives:,}; log loss {loss:.4f}; "
                f"{performance.metric} {value:.4f} (floor {floor})"
            )
        else:
            console.print(
                f"matured labels: {performance.rows:,} rows, {performance.positives:,} positive; "
                f"{performance.metric} {value:.4f} (floor {floor})"
            )
    verdict = "[red]retrain[/]" if summary.trigger.retrain else "[green]no retrain[/]"
    if summary.trigger.held:
        verdict = "[yellow]held[/] (the evidence is there; retraining waits)"
    console.print(f"trigger: {verdict}")
    for reason in summary.trigger.reasons:
        console.print(f"  - {reason}")
    if summary.retrain is not None:
        outcome = summary.retrain
        if outcome.retrained:
            gate = "[green]promoted to champion[/]" if outcome.promoted else "[yellow]held[/]"
            console.print(f"retrained: version {outcome.version}, gate: {gate}")
        else:
            console.print("[yellow]not retrained[/]")
        for reason in outcome.reasons:
            console.print(f"  - {reason}")
    folder = Path(next(iter(summary.reports.values()))).parent
    console.print(f"reports and summary.json in {folder}")


def run_episode(settings: Settings) -> None:
    """The demo's drift episode in its own home under ``settings.home``, printed run by run."""
    from monitoring import episode

    local = episode.episode_settings(settings)
    home = local.home
    firmware = episode.WORLD.drift.firmware
    console.print(
        f"a world of {episode.WORLD.cells} cells over {episode.WORLD.days} days in {home}: on day "
        f"{episode.DRIFT_DAY} {firmware.vendor}'s firmware update reports latency "
        f"×{firmware.latency_factor:g} and packet loss ×{firmware.loss_factor:g}; the fault "
        "champion was trained before it, and each week is batch-scored and monitored"
    )
    episode.prepare(local)
    result = episode.run(local, on_run=print_summary)
    console.print(
        f"PR AUC after the last run ({result.holdout}, labels known): first champion "
        f"v{result.first_version} {result.pr_auc_first:.4f}, champion now "
        f"v{result.final_version} {result.pr_auc_final:.4f}"
    )
    console.print(
        f"history: closedloop --home {home} monitor-history; browse the reports: "
        f"evidently ui --workspace {settings.paths.drift_episode.evidently_workspace}"
    )


def monitor_score(
    ctx: typer.Context,
    target: Annotated[ModelName, typer.Argument(help="Which model scores")],
    end: Annotated[
        datetime | None, typer.Option(help="End of the window (UTC) [default: the world's end]")
    ] = None,
    days: Annotated[float, typer.Option(help="Length of the window in days", min=0.01)] = 7,
) -> None:
    """Batch-score a window with the champion into the prediction log (source 'batch')."""
    settings = settings_of(ctx)
    stop = window_end(end, settings)
    run_score(settings, target.value, stop - timedelta(days=days), stop)


def monitor_history(
    ctx: typer.Context,
    target: Annotated[ModelName | None, typer.Argument(help="Only this model")] = None,
    as_json: AsJson = False,
) -> None:
    """Past monitoring runs: window, drift, performance, trigger and retraining outcome."""
    from monitoring.pipeline import history

    settings = settings_of(ctx)
    models = [target] if target else list(ModelName)
    runs = [summary for name in models for summary in history(settings, name.value)]
    if not runs:
        raise UserError("no monitoring runs yet; run 'closedloop monitor churn' first")
    if as_json:
        emit_json(runs)
        return
    shown = make_table(
        "monitoring runs",
        "model", "run", "version", "window end", "drift", "perf", "trigger", "outcome",
        keys=("run",),
    )  # fmt: skip
    for summary in runs:
        shown.add_row(*history_row(summary))
    console.print(shown)
    console.print(f"browse them: evidently ui --workspace {settings.paths.evidently_workspace}")


def history_row(summary: MonitorSummary) -> list[str]:
    """One run as the cells of the history table."""
    performance = summary.performance
    perf = "-"
    if performance is not None and performance.metric in performance.metrics:
        perf = f"{performance.metric} {performance.metrics[performance.metric]:.3f}"
        if performance.below_floor:
            perf += " (below floor)"
    outcome = "-"
    if summary.retrain is not None:
        if summary.retrain.retrained:
            verdict = "promoted" if summary.retrain.promoted else "held"
            outcome = f"v{summary.retrain.version} {verdict}"
        else:
            outcome = "not retrained: " + "; ".join(summary.retrain.reasons)
    return [
        summary.model,
        summary.run,
        summary.champion_version,
        f"{summary.window_end:%Y-%m-%d %H:%M}",
        f"{summary.drift.drifted_share:.0%}" + (" drifted" if summary.drift.drifted else ""),
        perf,
        "retrain" if summary.trigger.retrain else "held" if summary.trigger.held else "-",
        outcome,
    ]
